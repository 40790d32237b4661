-- Top talkers: bytes exchanged per client/server address pair.
select ip_0 as client, ip_1 as server, count(*) as requests,
       sum(request_length) as request_bytes, sum(response_length) as response_bytes
from l7_flow_log
where observation_point = 'c-p'
group by ip_0, ip_1
order by response_bytes desc
limit 20;
