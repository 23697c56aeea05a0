// Package build compiles Go main packages into static binaries, one per
// platform, and assembles them, ko-style and without a daemon, onto a base
// image into a multi-platform image index that exists only in memory until a
// publisher writes it.
package build
