-- The latest packet-captured request at every point on its path: client process (c-p), client
-- pod NIC (c), client node NIC (c-nd, maybe inside a tunnel), server node NIC (s-nd), server pod
-- NIC (s), server process (s-p). The request's TCP sequence number ties the views together;
-- hop_us is the time this point saw beyond the next one inward (both directions), i.e. the
-- latency added between them.
with latest as (
    select req_tcp_seq, client_port, server_port
    from l7_flow_log
    where signal_source = 'packet'
    order by start_time desc
    limit 1
),
path as (
    select s.*,
           case s.observation_point
               when 'c-p' then 0 when 'c' then 1 when 'c-nd' then 2
               when 's-nd' then 3 when 's' then 4 when 's-p' then 5 else 6
           end as hop
    from l7_flow_log s
    join latest l
      on s.req_tcp_seq = l.req_tcp_seq
     and s.client_port = l.client_port
     and s.server_port = l.server_port
)
select observation_point,
       signal_source,
       coalesce(capture_nic, process_kname_0, process_kname_1) as seen_by,
       coalesce(netns, '') as netns,
       coalesce(tunnel_type, '') as tunnel,
       request_type || ' ' || request_resource as request,
       response_duration as duration_us,
       response_duration - lead(response_duration) over (order by hop) as hop_us
from path
order by hop;
