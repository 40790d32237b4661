// Grafana's PostgreSQL datasource, replayed with pgx (Grafana's driver family; Debian's pgx v4):
// the health check, the query editor's metadata SQL (simple and extended protocol), and every
// panel of sql-examples/grafana/dashboards/wiretrace.json with its macros expanded the way
// Grafana's macros.go expands them.
//
// usage: grafana_pgx DASHBOARD_JSON PORT; prints one `ok <check>` line per passed check.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v4"
)

var ctx = context.Background()

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// simple runs sql over the simple protocol (Grafana's panel path) and returns its rows as text.
func simple(conn *pgx.Conn, sql string) [][]string {
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		fail("%v\n--- in ---\n%s", err, sql)
	}
	var rows [][]string
	for _, r := range results {
		if !strings.HasPrefix(r.CommandTag.String(), "SELECT") {
			fail("tag %q, not SELECT, for %s", r.CommandTag.String(), sql)
		}
		for _, row := range r.Rows {
			var cells []string
			for _, c := range row {
				cells = append(cells, string(c))
			}
			rows = append(rows, cells)
		}
	}
	return rows
}

var macro = regexp.MustCompile(`\$__(\w+)\(([^()]*)\)`)

// expand does what Grafana's postgres macro engine does for the macros the dashboard uses.
func expand(sql string, from, to time.Time) string {
	f, t := from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano)
	return macro.ReplaceAllStringFunc(sql, func(m string) string {
		parts := macro.FindStringSubmatch(m)
		args := strings.Split(parts[2], ",")
		for i := range args {
			args[i] = strings.TrimSpace(args[i])
		}
		switch parts[1] {
		case "timeFilter":
			return fmt.Sprintf("%s BETWEEN '%s' AND '%s'", args[0], f, t)
		case "timeFrom":
			return "'" + f + "'"
		case "timeTo":
			return "'" + t + "'"
		case "timeGroup", "timeGroupAlias":
			d, err := time.ParseDuration(strings.Trim(args[1], "'"))
			if err != nil {
				fail("interval %s: %v", args[1], err)
			}
			g := fmt.Sprintf("floor(extract(epoch from %s)/%v)*%v", args[0], d.Seconds(), d.Seconds())
			if parts[1] == "timeGroupAlias" {
				g += ` AS "time"`
			}
			return g
		case "unixEpochFilter":
			return fmt.Sprintf("%s >= %d AND %s <= %d", args[0], from.Unix(), args[0], to.Unix())
		}
		fail("macro %s not handled", m)
		return ""
	})
}

type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RawSQL string `json:"rawSql"`
		} `json:"targets"`
	} `json:"panels"`
}

func main() {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s user=wiretrace dbname=wiretrace sslmode=disable", os.Args[2]))
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close(ctx)

	// "Save & test": pgxpool's Ping sends `-- ping`.
	if err := conn.Ping(ctx); err != nil {
		fail("ping: %v", err)
	}
	fmt.Println("ok health")

	// The query editor (simple protocol).
	if v := simple(conn, "SELECT current_setting('server_version_num')::int/100 as version"); len(v) != 1 || v[0][0] != "1600" {
		fail("version: %v", v)
	}
	searchPath := `SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1),
                       array_upper(string_to_array(current_setting('search_path'),','),1)) as i,
       string_to_array(current_setting('search_path'),',') s`
	tables := simple(conn, `SELECT CASE WHEN quote_ident(table_schema) IN (`+searchPath+`)
  THEN quote_ident(table_name) ELSE quote_ident(table_schema)||'.'||quote_ident(table_name) END AS "table"
FROM information_schema.tables
WHERE quote_ident(table_schema) NOT IN ('information_schema','pg_catalog','_timescaledb_cache','_timescaledb_catalog','_timescaledb_internal','_timescaledb_config','timescaledb_information','timescaledb_experimental')
ORDER BY CASE WHEN quote_ident(table_schema) IN (`+searchPath+`) THEN 0 ELSE 1 END, 1`)
	// datafusion-postgres answers the search_path subquery with '', so names come qualified;
	// the editor then asks for the columns of the name it was given.
	table := "l7_flow_log"
	if !contains(tables, table) {
		table = "public.l7_flow_log"
	}
	if !contains(tables, table) {
		fail("table list: %v", tables)
	}
	columns := simple(conn, `SELECT quote_ident(column_name) AS "column", data_type AS "type"
FROM information_schema.columns
WHERE CASE WHEN array_length(parse_ident('`+table+`'),1) = 2
  THEN quote_ident(table_schema) = (parse_ident('`+table+`'))[1] AND quote_ident(table_name) = (parse_ident('`+table+`'))[2]
  ELSE quote_ident(table_name) = '`+table+`' AND quote_ident(table_schema) IN (`+searchPath+`) END`)
	if !contains(columns, "req_tcp_seq") {
		fail("column list: %v", columns)
	}
	fmt.Println("ok editor")

	// The schema handler (extended protocol, binary results, text parameters).
	rows, err := conn.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_name", "public")
	if err != nil {
		fail("schema tables: %v", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			fail("scan: %v", err)
		}
		names = append(names, n)
	}
	if rows.Err() != nil || !contains([][]string{names}, "l7_flow_log") {
		fail("schema tables: %v %v", names, rows.Err())
	}
	var n int64
	var newest time.Time
	if err := conn.QueryRow(ctx, "SELECT count(*), max(start_time) FROM l7_flow_log WHERE response_duration > $1", 0).Scan(&n, &newest); err != nil || n == 0 {
		fail("typed query: %v %d", err, n)
	}
	fmt.Println("ok extended")

	// Every dashboard panel over the last hour, its variable resolved first.
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		fail("dashboard: %v", err)
	}
	to := time.Now()
	from := to.Add(-time.Hour)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		got := simple(conn, expand(v.Query, from, to))
		if len(got) == 0 {
			fail("variable %s: no values", v.Name)
		}
		vars[v.Name] = got[0][0]
	}
	// Unix-epoch columns: a span id's top 32 bits are its start second.
	if got := simple(conn, expand("SELECT count(*) FROM l7_flow_log WHERE $__unixEpochFilter(_id >> 32)", from, to)); len(got) != 1 || got[0][0] == "0" {
		fail("unix epoch filter: %v", got)
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			sql := expand(t.RawSQL, from, to)
			for k, v := range vars {
				sql = strings.ReplaceAll(sql, "$"+k, v)
			}
			if got := simple(conn, sql); len(got) == 0 {
				fail("panel %q returned no rows:\n%s", p.Title, sql)
			}
		}
	}
	fmt.Println("ok dashboard")
}

func contains(rows [][]string, want string) bool {
	for _, r := range rows {
		for _, c := range r {
			if c == want {
				return true
			}
		}
	}
	return false
}
