-- Status code mix per observation point.
select observation_point, response_code, response_status, count(*) as spans
from l7_flow_log
group by observation_point, response_code, response_status
order by observation_point, response_code;
