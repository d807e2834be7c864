// Command probe is the only program inside the end-to-end test images: a
// static binary that reports what a container sees.
//
//	probe walk DIR        one JSON treediff.Entry per path below DIR (mounts skipped)
//	probe cat FILE...     read the files; print bytes read
//	probe write FILE TEXT...  create each FILE with its TEXT
//	probe echo WORDS...   print WORDS
//	probe emit N M        write N bytes to stdout and M to stderr (test/pattern)
//	probe sleep SECONDS   sleep (a long-running container)
//	probe readloop MS FILE  read FILE every MS milliseconds until killed (readloop.go)
//	probe readall PATH... read every regular file at or below each PATH; print count, bytes, time (timed.go)
//	probe walksum DIR     the walk of `probe walk`; print the entry count and time (timed.go)
package main
