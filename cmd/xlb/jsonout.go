package main

import (
	"encoding/json"
	"fmt"
	"io"
)

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "xlb: %v\n", err)
		return 1
	}
	return 0
}
