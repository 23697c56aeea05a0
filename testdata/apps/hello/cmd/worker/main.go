// Command worker is the sample app's second target: it prints a line and
// exits, so tests can check that changing one target leaves the other alone.
package main

import "fmt"

func main() {
	fmt.Println("worker done")
}
