-- Service map without headers: a client's view (c-p) and the server's view (s-p) of one request
-- share req_tcp_seq and resp_tcp_seq, so joining on them names both processes of every edge.
select c.process_kname_0 as client, s.process_kname_1 as server, s.server_port,
       count(*) as requests, avg(c.response_duration) as avg_client_us,
       avg(s.response_duration) as avg_server_us
from l7_flow_log c
join l7_flow_log s
  on c.req_tcp_seq = s.req_tcp_seq and c.resp_tcp_seq = s.resp_tcp_seq
 and c.client_port = s.client_port and c.server_port = s.server_port
where c.observation_point = 'c-p' and s.observation_point = 's-p'
group by 1, 2, 3
order by requests desc;
