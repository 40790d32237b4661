-- TCP flows with the most retransmitted segments, per capture point, with the handshake RTT
-- seen there: where on the path packets are being lost.
select capture_nic,
       netns,
       ip_0 || ':' || cast(client_port as varchar) as client,
       ip_1 || ':' || cast(server_port as varchar) as server,
       retransmissions_0 + retransmissions_1 as retransmissions,
       packets_0 + packets_1 as packets,
       handshake_rtt as handshake_rtt_us,
       close_type
from l4_flow_log
where protocol = 'tcp'
order by retransmissions desc, packets desc
limit 20;
