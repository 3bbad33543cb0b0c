-- monthly_bill_by_dept: The monthly AI bill per department: calls, tokens, provider cost, tax-mode surcharge and the billed total.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
-- Untagged spend is never dropped: it is billed to the department 'unallocated'.
SELECT
  department_id,
  CAST(COUNT(DISTINCT COALESCE(call_id, request_id)) AS BIGINT) AS requests,
  CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
  CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
  CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd,
  CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd,
  CAST(SUM(cost_usd + tax_usd) AS DECIMAL(38, 10)) AS billed_usd
FROM usage
WHERE dt >= ? AND dt < ?
GROUP BY department_id
ORDER BY billed_usd DESC, department_id
