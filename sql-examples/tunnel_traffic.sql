-- Traffic carried by each tunnel (VXLAN VNI, Geneve VNI, GRE key, IP-in-IP) between each pair
-- of underlay addresses, as seen on node NICs.
select tunnel_type,
       tunnel_id,
       tunnel_ip_0 as outer_src,
       tunnel_ip_1 as outer_dst,
       count(*) as flows,
       sum(bytes_0 + bytes_1) as payload_bytes,
       sum(packets_0 + packets_1) as packets
from l4_flow_log
where tunnel_type is not null
group by tunnel_type, tunnel_id, tunnel_ip_0, tunnel_ip_1
order by payload_bytes desc;
