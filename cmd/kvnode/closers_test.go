package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestClosers_RunInReverseAndJoinErrors(t *testing.T) {
	var c closers
	var ran []string
	errB := errors.New("b failed")
	c.push("a", func() error { ran = append(ran, "a"); return nil })
	c.push("b", func() error { ran = append(ran, "b"); return errB })
	c.push("c", func() error { ran = append(ran, "c"); return nil })

	err := c.close()
	if want := []string{"c", "b", "a"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if !errors.Is(err, errB) || !strings.Contains(err.Error(), "b: b failed") {
		t.Errorf("close() = %v, want b's error named after its step", err)
	}
	if err := c.close(); err != nil || len(ran) != 3 {
		t.Errorf("second close() = %v and ran %v, want nil and nothing more", err, ran)
	}
}
