// Command cvmfsctl is the operator's companion to cvmfs-snapshotter:
//
//	cvmfsctl ingest IMAGE --repo DIR [--insecure]
//	    write the image's layers into DIR in DUCC's layout (a local or NFS
//	    layer store, without a CVMFS publisher);
//	cvmfsctl pull IMAGE [--address SOCK] [--namespace NS] [--snapshotter NAME]
//	    pull through containerd (1.6 or later) with the layer-digest labels
//	    a remote snapshotter needs, printing for each layer whether it came
//	    from CVMFS or was downloaded;
//	cvmfsctl stats [--layer DIGEST]
//	    show the daemon's per-layer accounting of the layers mounted now,
//	    or one layer's per-file access profile since its last unmount;
//	cvmfsctl profile LAYER|IMAGE [--csv]
//	    the files read in a layer (or each layer of an image) across daemon
//	    restarts, with opens and bytes;
//	cvmfsctl report IMAGE... [--html FILE] [--svg FILE] [--png FILE] [--wait 1m]
//	    per layer, the share of its files and bytes read, as a table and a
//	    chart (gonum.org/v1/plot);
//	cvmfsctl missing [--ducc]
//	    the images not fully served from CVMFS, most pulled first, with
//	    the reasons; --ducc prints them as entries of a DUCC recipe's input.
//
// Every command that asks the daemon takes --address (default: the admin
// socket under the default root; unix:///path or host:port); every command
// takes --json.
//
// It is wiring only: the layout lives in package ducc, the pulling in
// containerd's client.
package main
