-- monthly_bill_by_environment: The monthly AI bill per department and environment (X-Environment).
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  department_id,
  environment,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY department_id, environment
ORDER BY billed_usd DESC, department_id, environment
