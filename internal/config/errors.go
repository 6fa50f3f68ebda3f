package config

import (
	"fmt"
	"strings"
)

// configError is the error Parse, Load, Validate and UnmarshalJSON
// return: ErrInvalidConfig plus one problem per line.
type configError struct {
	source   string // file the config came from, if any
	problems []Problem
}

func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	if e.source != "" {
		b.WriteString(" in ")
		b.WriteString(e.source)
	}
	if len(e.problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.problems[0].Error())
		return b.String()
	}
	fmt.Fprintf(&b, " (%d problems):", len(e.problems))
	for _, p := range e.problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalidConfig followed by one error per problem.
func (e *configError) Unwrap() []error {
	errs := make([]error, 0, 1+len(e.problems))
	errs = append(errs, ErrInvalidConfig)
	for _, p := range e.problems {
		errs = append(errs, p)
	}
	return errs
}

// Problem is one thing wrong with a config.
type Problem struct {
	At        string // JSON path whose position in the document to report
	Text      string // the message, starting with the field path
	Line, Col int    // 1-based position in the document; 0 when unknown
}

// Error returns the message, followed by the position when it is known.
func (p Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s (line %d, column %d)", p.Text, p.Line, p.Col)
	}
	return p.Text
}
