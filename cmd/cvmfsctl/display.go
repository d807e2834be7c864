package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// display returns a name the daemon sent (a file in a layer, an image
// reference, a reason: all come from images or labels, so hostile) as it
// may reach a terminal: unchanged when every rune is printable, otherwise
// Go-quoted, so that no escape sequence, control or bidi character, tab or
// newline (a column shifted, a line forged) gets through. A name that
// starts with a double quote is quoted too, so a quoted name is never
// mistaken for a plain one.
func display(s string) string {
	if !utf8.ValidString(s) || strings.HasPrefix(s, `"`) || strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
