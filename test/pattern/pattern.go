package pattern

import (
	"fmt"
	"io"
)

// line is the length of one line of the stream: "%015d\n" of its offset.
const line = 16

// Reader returns the first n bytes of the stream: lines of 15 decimal
// digits giving the line's own offset, then a newline.
func Reader(n int64) io.Reader {
	return io.LimitReader(&stream{}, n)
}

type stream struct {
	off int64
	buf [line]byte
}

func (s *stream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		start := s.off - s.off%line
		b := fmt.Appendf(s.buf[:0], "%015d\n", start)
		k := copy(p[n:], b[s.off-start:])
		n += k
		s.off += int64(k)
	}
	return n, nil
}

// Check returns nil if data is exactly the first want bytes of the stream,
// or an error saying how long data is and where it first differs.
func Check(data []byte, want int64) error {
	r := Reader(want)
	var exp [32 << 10]byte
	var off int64
	for off < int64(len(data)) {
		k, err := r.Read(exp[:])
		if k == 0 && err == io.EOF {
			break
		}
		for i := 0; i < k && off < int64(len(data)); i++ {
			if data[off] != exp[i] {
				return fmt.Errorf("got %d bytes of %d; first difference at offset %d", len(data), want, off)
			}
			off++
		}
	}
	switch {
	case int64(len(data)) < want:
		return fmt.Errorf("got %d bytes, want %d: cut at offset %d", len(data), want, len(data))
	case int64(len(data)) > want:
		return fmt.Errorf("got %d bytes, want %d: extra bytes from offset %d", len(data), want, want)
	}
	return nil
}
