package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
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
		follow := cmd.Flag("follow", "Keep streaming new decisions as they happen; reconnects when the stream breaks (an agent restart), without repeating decisions already printed.").Short('f').Bool()
		giveUp := cmd.Flag("give-up-after", "With --follow: stop when the agent has been unreachable this long (0: never).").Default("0").Duration()
		tokenFile := cmd.Flag("token-file", "File holding the agent's API token (healing.auth_token_file), sent as a bearer token; needed when the agent has server.require_api_token.").PlaceHolder("FILE").String()
		return cmd.FullCommand(), func(stdout, stderr io.Writer) int {
			auth, err := bearer(*tokenFile)
			if err != nil {
				fmt.Fprintf(stderr, "vigil status: --token-file: %v\n", err)
				return 2
			}
			if *follow {
				return followStatus(*base, *limit, *giveUp, auth, stdout, stderr)
			}
			return runStatus(*base, *limit, auth, stdout, stderr)
		}
	})
}

// bearer returns the Authorization header for the token in file, or ""
// without a file.
func bearer(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return "Bearer " + tok, nil
}

// actionsURL is the agent's /api/v1/actions URL for limit records.
func actionsURL(base string, limit int) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/") + "/api/v1/actions")
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("limit", fmt.Sprint(limit))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func runStatus(base string, limit int, auth string, stdout, stderr io.Writer) int {
	u, err := actionsURL(base, limit)
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: bad --url: %v\n", err)
		return 2
	}
	client := &http.Client{Timeout: 15 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
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
// table row, flushing after each. When the stream breaks (the agent
// restarts, a proxy drops it) it reconnects with a growing pause (1 s to
// 30 s); the records the agent replays on a new stream that were printed
// before are skipped (by time, then ID: IDs start again at 1 when the
// agent restarts). It gives up after giveUp without a stream (0: never).
func followStatus(base string, limit int, giveUp time.Duration, auth string, stdout, stderr io.Writer) int {
	u, err := actionsURL(base, limit)
	if err != nil {
		fmt.Fprintf(stderr, "vigil status: bad --url: %v\n", err)
		return 2
	}
	tw := statusTable(stdout)
	tw.Flush()
	var last printed
	pause := time.Second
	lost := time.Time{} // when the stream was last lost; zero while it runs
	for {
		streamed, err := followOnce(u, auth, &last, tw, stderr)
		if streamed {
			pause, lost = time.Second, time.Time{}
		}
		if lost.IsZero() {
			lost = time.Now()
		}
		if giveUp > 0 && time.Since(lost) >= giveUp {
			fmt.Fprintf(stderr, "vigil status: giving up after %s without a stream: %v\n", giveUp, err)
			return 1
		}
		fmt.Fprintf(stderr, "vigil status: %v; reconnecting in %s\n", err, pause)
		time.Sleep(pause)
		pause = min(2*pause, 30*time.Second)
	}
}

// printed is the last record printed.
type printed struct {
	at time.Time
	id uint64
}

// after reports whether r comes after the last record printed.
func (p printed) after(r healing.Record) bool {
	return r.At.After(p.at) || (r.At.Equal(p.at) && r.ID > p.id)
}

// followOnce reads one stream until it ends, printing the records that
// come after *last and advancing it. streamed says whether the agent
// answered with a stream; err says why it ended.
func followOnce(u, auth string, last *printed, tw *tabwriter.Writer, stderr io.Writer) (streamed bool, err error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
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
		if !last.after(r) {
			continue // printed before the stream broke
		}
		*last = printed{r.At, r.ID}
		statusRow(tw, r)
		tw.Flush()
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("stream ended: %w", err)
	}
	return true, errors.New("stream ended")
}
