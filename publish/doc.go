// Package publish writes locally assembled image indexes to their
// destination, a registry or an OCI image layout, images first and tags last.
package publish
