package pebbleng

// supported returns nil: pebble runs on this platform.
func supported() error { return nil }
