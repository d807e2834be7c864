// Command cvmfsctl is the operator's companion to cvmfs-snapshotter:
//
//	cvmfsctl ingest IMAGE --repo DIR [--insecure]
//	    write the image's layers into DIR in DUCC's layout (a local or NFS
//	    layer store, without a CVMFS publisher);
//	cvmfsctl pull IMAGE [--address SOCK] [--namespace NS] [--snapshotter NAME]
//	    pull through containerd (1.6 or later) with the layer-digest labels
//	    a remote snapshotter needs, printing for each layer whether it came
//	    from CVMFS or was downloaded;
//	cvmfsctl stats [--address HOST:PORT] [--layer DIGEST]
//	    show the daemon's per-layer accounting, or one layer's per-file
//	    access profile, from its metrics-address.
//
// It is wiring only: the layout lives in package ducc, the pulling in
// containerd's client.
package main
