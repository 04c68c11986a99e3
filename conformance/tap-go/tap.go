// Package tap writes Test Anything Protocol (version 13) output.
//
// It is a small stand-in for github.com/mndrix/tap-go, which Debian does not package: the
// runtime-tools validation programs import that path, and the conformance build places this
// directory there in its private GOPATH. Only the API those programs use is provided, with the
// same output format: "ok N - description", "not ok N - description", "# diagnostic",
// "ok N # SKIP reason" and YAML blocks indented by two spaces between "---" and "...".
package tap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// T writes one TAP stream. Create it with New.
type T struct {
	// next is the number the next test point gets.
	next int
	// TODO marks the test points written from now on with the TODO directive.
	TODO bool
	// Writer receives the output; nil means standard output.
	Writer io.Writer
}

// New returns a stream whose first test point is number 1.
func New() *T {
	return &T{next: 1}
}

func (t *T) out() io.Writer {
	if t.Writer == nil {
		return os.Stdout
	}
	return t.Writer
}

func (t *T) printf(format string, a ...interface{}) {
	fmt.Fprintf(t.out(), format, a...)
}

// Header writes the version line and, when count is positive, the plan "1..count".
func (t *T) Header(count int) {
	t.printf("TAP version 13\n")
	if count > 0 {
		t.printf("1..%d\n", count)
	}
}

// Ok writes one test point that passed when test is true.
func (t *T) Ok(test bool, description string) {
	status := "ok"
	if !test {
		status = "not ok"
	}
	if t.TODO {
		t.printf("%s %d # TODO %s\n", status, t.next, description)
	} else {
		t.printf("%s %d - %s\n", status, t.next, description)
	}
	t.next++
}

// Pass writes a passing test point.
func (t *T) Pass(description string) { t.Ok(true, description) }

// Fail writes a failing test point.
func (t *T) Fail(description string) { t.Ok(false, description) }

// Skip writes count skipped test points.
func (t *T) Skip(count int, description string) {
	for i := 0; i < count; i++ {
		t.printf("ok %d # SKIP %s\n", t.next, description)
		t.next++
	}
}

// Todo returns a copy of the stream whose test points carry the TODO directive. The copy keeps
// its own numbering from here on, as the original library does.
func (t *T) Todo() *T {
	todo := *t
	todo.TODO = true
	return &todo
}

// Count is the number of test points written so far.
func (t *T) Count() int { return t.next - 1 }

// AutoPlan writes the plan for the test points written so far (a trailing plan).
func (t *T) AutoPlan() { t.printf("1..%d\n", t.Count()) }

// comment turns text into diagnostic lines: each line after the first gets its own "# ".
func comment(text string) string {
	return strings.Replace(strings.TrimRight(text, "\n"), "\n", "\n# ", -1)
}

// Diagnostic writes a "# " comment line (or lines).
func (t *T) Diagnostic(message string) { t.printf("# %s\n", comment(message)) }

// Diagnosticf writes a formatted "# " comment line (or lines).
func (t *T) Diagnosticf(format string, a ...interface{}) {
	t.printf("# %s\n", comment(fmt.Sprintf(format, a...)))
}

// YAML writes message as a YAML block attached to the previous test point. The block holds
// indented JSON, which is valid YAML (its flow style), so no YAML library is needed.
func (t *T) YAML(message interface{}) error {
	data, err := json.MarshalIndent(message, "", "  ")
	if err != nil {
		return err
	}
	t.printf("  ---\n")
	for _, line := range strings.Split(string(data), "\n") {
		t.printf("  %s\n", line)
	}
	t.printf("  ...\n")
	return nil
}
