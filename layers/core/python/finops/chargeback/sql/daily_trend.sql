-- daily_trend: Spend per UTC day of the month: calls, cost, tax, billed total and routing savings.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
SELECT
  CAST(dt AS DATE) AS day,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd,
  CAST(SUM(counterfactual_usd - cost_usd) AS DECIMAL(38, 10)) AS savings_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY dt
ORDER BY day
