// pgJDBC (Debian's libpostgresql-jdbc-java) against wiretrace: the driver's own startup queries,
// DatabaseMetaData (what IDEs and BI tools call), prepared statements, timestamps.
//
// usage: java -cp /usr/share/java/postgresql.jar JdbcSession.java PORT
// prints one `ok <check>` line per passed check.

import java.sql.*;

public class JdbcSession {
    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
        System.out.println("ok " + what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/wiretrace?user=wiretrace";
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseMajorVersion() == 16, "version");
            boolean found = false;
            try (ResultSet t = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (t.next()) found |= t.getString("TABLE_NAME").equals("l7_flow_log");
            }
            check(found, "tables");
            int cols = 0;
            try (ResultSet col = md.getColumns(null, "public", "l7_flow_log", "%")) {
                while (col.next()) cols++;
            }
            check(cols > 30, "columns");
            try (Statement s = c.createStatement();
                    ResultSet r = s.executeQuery("select count(*) from l7_flow_log")) {
                check(r.next() && r.getLong(1) > 0, "count");
            }
            try (PreparedStatement p = c.prepareStatement(
                    "select _id, start_time, response_duration, request_resource from l7_flow_log "
                            + "where response_duration > ? and request_resource like ? order by start_time limit 5")) {
                p.setLong(1, 0);
                p.setString(2, "/%");
                int n = 0;
                try (ResultSet r = p.executeQuery()) {
                    while (r.next()) {
                        Timestamp ts = r.getTimestamp("start_time");
                        if (ts == null || r.getLong("_id") == 0) throw new AssertionError("row");
                        n++;
                    }
                }
                check(n == 5, "params");
            }
            // A cursor-style fetch: portals executed 2 rows at a time inside a transaction.
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("select _id from l7_flow_log order by _id limit 7")) {
                p.setFetchSize(2);
                int n = 0;
                try (ResultSet r = p.executeQuery()) {
                    while (r.next()) n++;
                }
                check(n == 7, "portal");
            }
            c.commit();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.execute("create table t (a int)");
                System.out.println("write accepted");
            } catch (SQLException e) {
                check("25006".equals(e.getSQLState()), "refused");
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("select 40 + 2")) {
                check(r.next() && r.getInt(1) == 42, "alive");
            }
        }
    }
}
