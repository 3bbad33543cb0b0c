-- tax_collected: Tax-mode surcharges collected per department and project (calls admitted past a soft budget).
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  department_id,
  project_id,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS taxed_requests,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS taxed_cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd
FROM usage
WHERE dt >= ? AND dt < ?
  AND tax_usd <> 0
GROUP BY department_id, project_id
ORDER BY tax_usd DESC, department_id, project_id
