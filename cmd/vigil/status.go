package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigil-agent/vigil/healing"
)

// `vigil status [--url URL] [--limit N] [--follow]`: the healing engine's
// recent decisions for on-call, from /api/v1/actions; --follow streams new
// ones over Server-Sent Events from the same endpoint.
func init() {
	subcommands = append(subcommands, func(app *kingpin.Application) (string, func(stdout, stderr io.Writer) int) {
		cmd := app.Command("status", "Print the healing engine's recent remediation decisions (taken, vetoed, dry-run) from a running agent.")
		base := cmd.Flag("url", "The agent's base URL.").Default("http://127.0.0.1:19100").String()
		limit := cmd.Flag("limit", "How many recent decisions to print.").Default("20").Int()
		follow := cmd.Flag("follow", "Keep streaming new decisions as they happen.").Short('f').Bool()
		return cmd.FullCommand(), func(stdout, stderr io.Writer) int {
			return runStatus(*base, *limit, *follow, stdout, stderr)
		}
	})
}

func runStatus(base string, limit int, follow bool, stdout, stderr io.Writer) int {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/api/v1/actions")
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: bad --url: %v\n", err)
		return 2
	}
	q := u.Query()
	q.Set("limit", fmt.Sprint(limit))
	u.RawQuery = q.Encode()
	if follow {
		return followStatus(u.String(), stdout, stderr)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	resp, err := client.Get(u.String())
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(stderr, "vigil status: %s: %s\n", resp.Status, strings.TrimSpace(string(b)))
		return 1
	}
	var ar healing.ActionsResponse
	if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
		fmt.Fprintf(stderr, "vigil status: cannot decode the answer: %v\n", err)
		return 1
	}
	mode := "live"
	if ar.DryRun {
		mode = "dry-run"
	}
	if ar.Paused {
		mode += ", PAUSED"
	}
	fmt.Fprintf(stdout, "agent %s: remediation %s; %d recent decisions\n", ar.Agent, mode, len(ar.Actions))
	tw := statusTable(stdout)
	for _, r := range ar.Actions {
		statusRow(tw, r)
	}
	tw.Flush()
	return 0
}

func statusTable(w io.Writer) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tPOLICY\tSTEP\tACTION\tTARGET\tRESULT\tREASON\tRUNBOOK")
	return tw
}

func statusRow(tw *tabwriter.Writer, r healing.Record) {
	result := string(r.Result)
	if r.Guard != "" && r.Result == healing.ResultVetoed {
		result += " (" + r.Guard + ")"
	}
	reason := strings.ReplaceAll(r.Reason, "\n", " ")
	if len(reason) > 120 {
		reason = reason[:117] + "..."
	}
	runbook := r.RunbookURL
	if runbook == "" {
		runbook = "-"
	}
	fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.At.Local().Format("15:04:05"), r.Policy, r.Step,
		r.Action, r.Target.String(), result, reason, runbook)
}

// followStatus prints each record of the Server-Sent Events stream as a
// table row, flushing after each, until the stream ends.
func followStatus(u string, stdout, stderr io.Writer) int {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(stderr, "vigil status: %s: %s\n", resp.Status, strings.TrimSpace(string(b)))
		return 1
	}
	tw := statusTable(stdout)
	tw.Flush()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var r healing.Record
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			fmt.Fprintf(stderr, "vigil status: bad event: %v\n", err)
			continue
		}
		statusRow(tw, r)
		tw.Flush()
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "vigil status: stream ended: %v\n", err)
		return 1
	}
	return 0
}
