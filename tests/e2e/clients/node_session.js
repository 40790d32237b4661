// node-postgres (extended protocol for parameterized queries, text results) against wiretrace.
//
// usage: node node_session.js PORT; prints one `ok <check>` line per passed check.
const { Client } = require('pg');

async function main(port) {
  const client = new Client({ host: '127.0.0.1', port, user: 'wiretrace', database: 'wiretrace' });
  await client.connect();
  const v = await client.query('select version() as v');
  if (!v.rows[0].v.startsWith('PostgreSQL 16')) throw new Error('version');
  console.log('ok version');
  const n = await client.query('select count(*) as n from l7_flow_log');
  if (!(Number(n.rows[0].n) > 0)) throw new Error('count');
  console.log('ok count');
  const r = await client.query(
    'select _id, start_time, response_duration, request_resource from l7_flow_log ' +
      'where response_duration > $1 and request_resource like $2 order by start_time limit 5',
    [0, '/%'],
  );
  if (r.rows.length !== 5 || !(r.rows[0].start_time instanceof Date)) throw new Error('params');
  console.log('ok params');
  try {
    await client.query("insert into l7_flow_log (_id) values (1)");
    console.log('write accepted');
  } catch (e) {
    if (e.code !== '25006') throw e;
    console.log('ok refused');
  }
  const a = await client.query('select 40 + 2 as x');
  if (Number(a.rows[0].x) !== 42) throw new Error('alive');
  console.log('ok alive');
  await client.end();
}

main(Number(process.argv[2])).catch((e) => {
  console.error(e);
  process.exit(1);
});
