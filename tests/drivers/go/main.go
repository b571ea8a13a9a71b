// Command scenario runs a scenario of named steps with the official Neo4j Go driver and prints
// one JSON document with each step's outcome (tests/drivers/README.md gives the input and
// output).
//
//	scenario [--check] < scenario.json
//
// --check only validates the input. Exit 0 whatever the server answers (each step reports its
// own error code); exit 2 when the input itself is malformed.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/neo4j/neo4j-go-driver/v5/neo4j"
	"github.com/neo4j/neo4j-go-driver/v5/neo4j/auth"
	"github.com/neo4j/neo4j-go-driver/v5/neo4j/dbtype"
)

type statement struct {
	Statement *string        `json:"statement"`
	Params    map[string]any `json:"params"`
}

type step struct {
	statement
	Step       string      `json:"step"`
	Name       string      `json:"name"`
	Routing    string      `json:"routing"`
	Explicit   bool        `json:"explicit"`
	Statements []statement `json:"statements"`
	Tokens     []string    `json:"tokens"`
	PauseMs    int         `json:"pause_ms"`
}

type input struct {
	URI      string `json:"uri"`
	Database string `json:"database"`
	Auth     struct {
		Scheme   string `json:"scheme"`
		User     string `json:"user"`
		Password string `json:"password"`
		Token    string `json:"token"`
	} `json:"auth"`
	Steps []step `json:"steps"`
}

// outcome is what a step reports; Rows is a list of rows, or one list per statement.
type outcome struct {
	Step          string    `json:"step"`
	Name          string    `json:"name"`
	OK            bool      `json:"ok"`
	Checked       bool      `json:"checked,omitempty"`
	Rows          any       `json:"rows"`
	ErrorCode     *string   `json:"error_code"`
	GqlStatus     *string   `json:"gql_status,omitempty"`
	Error         string    `json:"error,omitempty"`
	Bookmarks     *[]string `json:"bookmarks,omitempty"`
	TokenCalls    *int      `json:"token_calls,omitempty"`
	SecurityCodes []string  `json:"security_codes,omitempty"`
}

type row = map[string]any

var kinds = map[string]string{
	"autocommit":            "statement",
	"execute_query":         "statement",
	"write_tx":              "statements",
	"rollback_tx":           "statements",
	"read_tx":               "statements",
	"verify_connectivity":   "nothing",
	"expired_token_refresh": "statement",
}

// Short enough that a refused or broken server fails a test quickly, not after 30 s of retries.
func configure(config *neo4j.Config) {
	config.MaxTransactionRetryTime = 5 * time.Second
	config.SocketConnectTimeout = 10 * time.Second
	config.ConnectionAcquisitionTimeout = 15 * time.Second
}

func check(in *input) error {
	if in.URI == "" {
		return errors.New("uri must be a string")
	}
	switch {
	case in.Auth.Scheme == "basic" && in.Auth.User != "":
	case in.Auth.Scheme == "bearer" && in.Auth.Token != "":
	default:
		return errors.New("auth must be basic with a user or bearer with a token")
	}
	if in.Steps == nil {
		return errors.New("steps must be a list")
	}
	for i, s := range in.Steps {
		kind, known := kinds[s.Step]
		if !known {
			return fmt.Errorf("step %d: unknown step %q", i, s.Step)
		}
		if s.Routing != "" && s.Routing != "read" && s.Routing != "write" {
			return fmt.Errorf("step %d: routing is read or write", i)
		}
		if kind == "statement" && s.Statement == nil {
			return fmt.Errorf("step %d: needs a statement", i)
		}
		if kind == "statements" {
			if len(s.Statements) == 0 {
				return fmt.Errorf("step %d: needs statements", i)
			}
			for j, spec := range s.Statements {
				if spec.Statement == nil {
					return fmt.Errorf("step %d.%d: needs a statement", i, j)
				}
			}
		}
		if s.Step == "expired_token_refresh" && len(s.Tokens) < 2 {
			return fmt.Errorf("step %d: tokens must list at least two tokens", i)
		}
	}
	return nil
}

// fromJSON turns json.Numbers into int64 where they are integral, else float64, so integers
// reach Neo4j as integers.
func fromJSON(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = fromJSON(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = fromJSON(x)
		}
		return out
	}
	return value
}

func params(p map[string]any) map[string]any {
	if p == nil {
		return map[string]any{}
	}
	return fromJSON(p).(map[string]any)
}

// plain turns driver values into plain JSON: nodes {labels, properties}, relationships
// {type, properties}, paths {nodes, relationships}; temporal and spatial values as strings.
func plain(value any) any {
	switch v := value.(type) {
	case nil, bool, int64, float64, string:
		return v
	case []byte:
		out := make([]any, len(v))
		for i, b := range v {
			out[i] = int64(b)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = plain(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = plain(x)
		}
		return out
	case dbtype.Node:
		labels := append([]string{}, v.Labels...)
		sort.Strings(labels)
		return map[string]any{"labels": labels, "properties": plain(v.Props)}
	case dbtype.Relationship:
		return map[string]any{"type": v.Type, "properties": plain(v.Props)}
	case dbtype.Path:
		nodes := make([]any, len(v.Nodes))
		for i, n := range v.Nodes {
			nodes[i] = plain(n)
		}
		rels := make([]any, len(v.Relationships))
		for i, r := range v.Relationships {
			rels[i] = plain(r)
		}
		return map[string]any{"nodes": nodes, "relationships": rels}
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(value)
}

func rowsOf(records []*neo4j.Record) []row {
	out := make([]row, 0, len(records))
	for _, record := range records {
		out = append(out, plain(record.AsMap()).(row))
	}
	return out
}

// runFunc is a transaction's Run, or an auto-commit one of a session.
type runFunc = func(ctx context.Context, cypher string, params map[string]any) (neo4j.ResultWithContext, error)

func runEach(ctx context.Context, run runFunc, statements []statement) ([][]row, error) {
	out := [][]row{}
	for _, spec := range statements {
		result, err := run(ctx, *spec.Statement, params(spec.Params))
		if err != nil {
			return nil, err
		}
		records, err := result.Collect(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, rowsOf(records))
	}
	return out, nil
}

func queryRouting(s step) neo4j.ExecuteQueryConfigurationOption {
	if s.Routing == "read" {
		return neo4j.ExecuteQueryWithReadersRouting()
	}
	return neo4j.ExecuteQueryWithWritersRouting()
}

// withSession runs work in a session and reports the session's bookmarks beside its rows.
func withSession(ctx context.Context, driver neo4j.DriverWithContext, database string,
	out *outcome, work func(neo4j.SessionWithContext) (any, error)) error {
	session := driver.NewSession(ctx, neo4j.SessionConfig{DatabaseName: database})
	defer session.Close(ctx)
	rows, err := work(session)
	if err != nil {
		return err
	}
	out.Rows = rows
	bookmarks := append([]string{}, session.LastBookmarks()...)
	out.Bookmarks = &bookmarks
	return nil
}

// recordingManager hands out tokens[0] until the server has answered TokenExpired, then
// tokens[1], and so on, through the driver's own bearer token manager; it counts how often it
// was asked and which security codes the driver passed it.
type recordingManager struct {
	inner  auth.TokenManager
	mutex  sync.Mutex
	calls  int
	codes  []string
	tokens []string
}

func newRecordingManager(tokens []string) *recordingManager {
	m := &recordingManager{tokens: tokens}
	m.inner = auth.BearerTokenManager(func(context.Context) (neo4j.AuthToken, *time.Time, error) {
		m.mutex.Lock()
		defer m.mutex.Unlock()
		m.calls++
		expired := 0
		for _, code := range m.codes {
			if strings.HasSuffix(code, ".TokenExpired") {
				expired++
			}
		}
		return neo4j.BearerAuth(m.tokens[min(expired, len(m.tokens)-1)]), nil, nil
	})
	return m
}

func (m *recordingManager) GetAuthToken(ctx context.Context) (neo4j.AuthToken, error) {
	return m.inner.GetAuthToken(ctx)
}

func (m *recordingManager) HandleSecurityException(
	ctx context.Context, token neo4j.AuthToken, err *neo4j.Neo4jError) (bool, error) {
	m.mutex.Lock()
	m.codes = append(m.codes, err.Code)
	m.mutex.Unlock()
	return m.inner.HandleSecurityException(ctx, token, err)
}

// Each step fills in its rows (and extras); an error becomes the step's error code.
var steps = map[string]func(context.Context, neo4j.DriverWithContext, *input, step, *outcome) error{
	"autocommit": func(ctx context.Context, d neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		return withSession(ctx, d, in.Database, out, func(session neo4j.SessionWithContext) (any, error) {
			autocommit := func(ctx context.Context, cypher string, p map[string]any) (neo4j.ResultWithContext, error) {
				return session.Run(ctx, cypher, p)
			}
			rows, err := runEach(ctx, autocommit, []statement{s.statement})
			if err != nil {
				return nil, err
			}
			return rows[0], nil
		})
	},
	"execute_query": func(ctx context.Context, d neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		result, err := neo4j.ExecuteQuery(ctx, d, *s.Statement, params(s.Params),
			neo4j.EagerResultTransformer, neo4j.ExecuteQueryWithDatabase(in.Database), queryRouting(s))
		if err != nil {
			return err
		}
		out.Rows = rowsOf(result.Records)
		return nil
	},
	"write_tx": func(ctx context.Context, d neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		return withSession(ctx, d, in.Database, out, func(session neo4j.SessionWithContext) (any, error) {
			if !s.Explicit {
				return session.ExecuteWrite(ctx, func(tx neo4j.ManagedTransaction) (any, error) {
					return runEach(ctx, tx.Run, s.Statements)
				})
			}
			tx, err := session.BeginTransaction(ctx)
			if err != nil {
				return nil, err
			}
			defer tx.Close(ctx)
			rows, err := runEach(ctx, tx.Run, s.Statements)
			if err != nil {
				return nil, err
			}
			return rows, tx.Commit(ctx)
		})
	},
	"rollback_tx": func(ctx context.Context, d neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		return withSession(ctx, d, in.Database, out, func(session neo4j.SessionWithContext) (any, error) {
			tx, err := session.BeginTransaction(ctx)
			if err != nil {
				return nil, err
			}
			rows, err := runEach(ctx, tx.Run, s.Statements)
			if rollbackErr := tx.Rollback(ctx); err == nil {
				err = rollbackErr
			}
			return rows, err
		})
	},
	"read_tx": func(ctx context.Context, d neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		return withSession(ctx, d, in.Database, out, func(session neo4j.SessionWithContext) (any, error) {
			return session.ExecuteRead(ctx, func(tx neo4j.ManagedTransaction) (any, error) {
				return runEach(ctx, tx.Run, s.Statements)
			})
		})
	},
	"verify_connectivity": func(ctx context.Context, d neo4j.DriverWithContext, _ *input, _ step, out *outcome) error {
		out.Rows = []row{}
		return d.VerifyConnectivity(ctx)
	},
	"expired_token_refresh": func(ctx context.Context, _ neo4j.DriverWithContext, in *input, s step, out *outcome) error {
		manager := newRecordingManager(s.Tokens)
		defer func() {
			manager.mutex.Lock()
			defer manager.mutex.Unlock()
			calls := manager.calls
			out.TokenCalls = &calls
			out.SecurityCodes = append([]string{}, manager.codes...)
		}()
		driver, err := neo4j.NewDriverWithContext(in.URI, manager, configure)
		if err != nil {
			return err
		}
		defer driver.Close(ctx)
		query := func() (*neo4j.EagerResult, error) {
			return neo4j.ExecuteQuery(ctx, driver, *s.Statement, params(s.Params),
				neo4j.EagerResultTransformer, neo4j.ExecuteQueryWithDatabase(in.Database), queryRouting(s))
		}
		if s.PauseMs > 0 {
			// Run once, then wait: the first token expires while its connection stays open.
			if _, err := query(); err != nil {
				return err
			}
			time.Sleep(time.Duration(s.PauseMs) * time.Millisecond)
		}
		result, err := query()
		if err != nil {
			return err
		}
		out.Rows = rowsOf(result.Records)
		return nil
	},
}

func failure(err error, out *outcome) {
	out.OK = false
	out.Rows = []row{}
	out.Error = fmt.Sprintf("%T: %v", err, err)
	// Out of retries, the driver keeps the errors of each try: the last one has the code.
	var limit *neo4j.TransactionExecutionLimit
	if errors.As(err, &limit) && len(limit.Errors) > 0 {
		err = limit.Errors[len(limit.Errors)-1]
	}
	var neo4jErr *neo4j.Neo4jError
	if errors.As(err, &neo4jErr) {
		out.ErrorCode = &neo4jErr.Code
		if neo4jErr.GqlStatus != "" {
			out.GqlStatus = &neo4jErr.GqlStatus
		}
	}
}

func driverVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/neo4j/neo4j-go-driver/v5" {
				return "neo4j-go-driver/" + dep.Version
			}
		}
	}
	return "neo4j-go-driver/unknown"
}

func run(in *input, checkOnly bool) []outcome {
	results := make([]outcome, 0, len(in.Steps))
	if checkOnly {
		for _, s := range in.Steps {
			results = append(results, outcome{Step: s.Step, Name: s.Name, OK: true, Checked: true, Rows: []row{}})
		}
		return results
	}
	ctx := context.Background()
	token := neo4j.BearerAuth(in.Auth.Token)
	if in.Auth.Scheme == "basic" {
		token = neo4j.BasicAuth(in.Auth.User, in.Auth.Password, "")
	}
	driver, err := neo4j.NewDriverWithContext(in.URI, token, configure)
	for _, s := range in.Steps {
		out := outcome{Step: s.Step, Name: s.Name, OK: true}
		if err == nil {
			err := steps[s.Step](ctx, driver, in, s, &out)
			if err != nil {
				failure(err, &out)
			}
		} else {
			failure(err, &out)
		}
		results = append(results, out)
	}
	if err == nil {
		driver.Close(ctx)
	}
	return results
}

func main() {
	checkOnly := len(os.Args) > 1 && os.Args[1] == "--check"
	raw, err := io.ReadAll(os.Stdin)
	var in input
	if err == nil {
		decoder := json.NewDecoder(bytes.NewReader(raw))
		decoder.UseNumber()
		err = decoder.Decode(&in)
	}
	if err == nil {
		err = check(&in)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "malformed input: %v\n", err)
		os.Exit(2)
	}
	if in.Database == "" {
		in.Database = "neo4j"
	}
	for i := range in.Steps {
		if in.Steps[i].Name == "" {
			in.Steps[i].Name = in.Steps[i].Step
		}
	}
	encoded, err := json.Marshal(map[string]any{"driver": driverVersion(), "results": run(&in, checkOnly)})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot encode the results: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(encoded))
}
