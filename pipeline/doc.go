// Package pipeline holds slipway's configuration types, their validation and
// templating, and the driver that runs build → scan → sign → push.
package pipeline
