package main

import (
	"errors"
	"fmt"
)

// closers is a stack of shutdown steps. run pushes a step as soon as the
// thing it stops exists, and close runs the steps in reverse order, so a
// start that fails half way stops exactly what it started, in the same order
// as a full shutdown.
type closers struct {
	steps []closer
}

type closer struct {
	name string
	fn   func() error
}

// push adds a step that close runs before every step pushed earlier.
func (c *closers) push(name string, fn func() error) {
	c.steps = append(c.steps, closer{name: name, fn: fn})
}

// close runs every step, last pushed first, even after one fails, and
// returns their errors joined, each prefixed with its step's name. The stack
// is empty afterwards, so a second call does nothing.
func (c *closers) close() error {
	var errs []error
	for i := len(c.steps) - 1; i >= 0; i-- {
		s := c.steps[i]
		if err := s.fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
	}
	c.steps = nil
	return errors.Join(errs...)
}
