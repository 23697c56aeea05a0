// Package resolve rewrites image references in Kubernetes YAML to the digest references of pushed images, preserving comments and formatting.
package resolve
