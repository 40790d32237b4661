-- Redo decapsulation in SQL on the headers stored with each packet span: outer and inner
-- addresses, tunnel id and the TCP sequence number of the request's first packet.
select observation_point,
       capture_nic,
       decap(captured_headers)['tunnel_type'] as tunnel,
       decap(captured_headers)['tunnel_id'] as tunnel_id,
       decap(captured_headers)['outer_src'] as outer_src,
       decap(captured_headers)['inner_src'] as inner_src,
       decap(captured_headers)['inner_dst'] as inner_dst,
       inner_tcp_seq(captured_headers) = req_tcp_seq as seq_matches
from l7_flow_log
where captured_headers is not null
order by start_time desc
limit 20;
