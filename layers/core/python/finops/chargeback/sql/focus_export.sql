-- focus_export: FOCUS 1.2 cost and usage rows for one billing month: one Usage row per charge period (UTC day) x department x project x user x environment x model x token direction x price version, plus one Tax row per day x department x project x user x environment x model for tax-mode surcharges.
-- Parameters: 1 = first day of the billing month (YYYY-MM-DD), 2 = first day of the next month (exclusive).
-- The gateway is the provider and the invoice issuer of this internal chargeback; PublisherName is the upstream LLM provider.
-- Departments are sub accounts. List prices come from the gateway's price catalog (USD per 1M tokens, hence the PricingUnit).
-- Money is DECIMAL(38, 10); sum(BilledCost) equals the ledger's cost + tax for the month.
WITH base AS (
  SELECT *
  FROM usage
  WHERE dt >= ? AND dt < ?
),
directions AS (
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'input' AS token_direction, 'Input Tokens' AS meter,
         input_tokens - cached_input_tokens - COALESCE(cache_write_input_tokens, 0) AS tokens, input_cost_usd AS cost_usd,
         input_price_usd_per_mtok AS unit_price
  FROM base
  UNION ALL
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'cached_input' AS token_direction, 'Cached Input Tokens' AS meter,
         cached_input_tokens AS tokens, cached_input_cost_usd AS cost_usd,
         cached_input_price_usd_per_mtok AS unit_price
  FROM base
  UNION ALL
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'cache_write_input' AS token_direction, 'Cache Write Input Tokens' AS meter,
         COALESCE(cache_write_input_tokens, 0) AS tokens, COALESCE(cache_write_input_cost_usd, 0) AS cost_usd,
         COALESCE(cache_write_input_price_usd_per_mtok, input_price_usd_per_mtok) AS unit_price
  FROM base
  UNION ALL
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'output' AS token_direction, 'Output Tokens' AS meter,
         output_tokens AS tokens, output_cost_usd AS cost_usd,
         output_price_usd_per_mtok AS unit_price
  FROM base
),
usage_charges AS (
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         token_direction, meter, unit_price,
         CAST(SUM(tokens) AS DECIMAL(38, 0)) AS tokens,
         CAST(SUM(cost_usd) AS DECIMAL(38, 10)) AS cost_usd
  FROM directions
  GROUP BY dt, department_id, project_id, user_id, environment, provider, model, price_version,
           token_direction, meter, unit_price
  HAVING SUM(tokens) <> 0 OR SUM(cost_usd) <> 0
),
tax_charges AS (
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         CAST(SUM(tax_usd) AS DECIMAL(38, 10)) AS tax_usd
  FROM base
  GROUP BY dt, department_id, project_id, user_id, environment, provider, model, price_version
  HAVING SUM(tax_usd) <> 0
),
charges AS (
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'Usage' AS charge_category, token_direction, meter, unit_price, tokens,
         CAST(tokens * CAST('0.000001' AS DECIMAL(7, 6)) AS DECIMAL(38, 10)) AS pricing_quantity,
         cost_usd AS billed,
         CAST(unit_price * CAST(tokens * CAST('0.000001' AS DECIMAL(7, 6)) AS DECIMAL(38, 10)) AS DECIMAL(38, 10))
           AS list_cost
  FROM usage_charges
  UNION ALL
  SELECT dt, department_id, project_id, user_id, environment, provider, model, price_version,
         'Tax' AS charge_category, CAST(NULL AS VARCHAR) AS token_direction, CAST(NULL AS VARCHAR) AS meter,
         CAST(NULL AS DECIMAL(18, 10)) AS unit_price, CAST(NULL AS DECIMAL(38, 0)) AS tokens,
         CAST(NULL AS DECIMAL(38, 10)) AS pricing_quantity,
         tax_usd AS billed, tax_usd AS list_cost
  FROM tax_charges
)
SELECT
  CAST(billed AS DECIMAL(38, 10)) AS BilledCost,
  'ai-finops-gateway' AS BillingAccountId,
  'AI FinOps Gateway' AS BillingAccountName,
  'USD' AS BillingCurrency,
  date_add('month', 1, CAST(date_trunc('month', CAST(dt AS DATE)) AS TIMESTAMP)) AS BillingPeriodEnd,
  CAST(date_trunc('month', CAST(dt AS DATE)) AS TIMESTAMP) AS BillingPeriodStart,
  charge_category AS ChargeCategory,
  CAST(NULL AS VARCHAR) AS ChargeClass,
  CASE
    WHEN charge_category = 'Tax' THEN 'Tax-mode budget surcharge on ' || model || ' usage'
    ELSE model || ' ' || lower(meter)
  END AS ChargeDescription,
  'Usage-Based' AS ChargeFrequency,
  date_add('day', 1, CAST(CAST(dt AS DATE) AS TIMESTAMP)) AS ChargePeriodEnd,
  CAST(CAST(dt AS DATE) AS TIMESTAMP) AS ChargePeriodStart,
  CAST(NULL AS VARCHAR) AS CommitmentDiscountCategory,
  CAST(NULL AS VARCHAR) AS CommitmentDiscountId,
  CAST(NULL AS VARCHAR) AS CommitmentDiscountName,
  CAST(NULL AS VARCHAR) AS CommitmentDiscountStatus,
  CAST(NULL AS VARCHAR) AS CommitmentDiscountType,
  CAST(tokens AS DECIMAL(38, 10)) AS ConsumedQuantity,
  CASE WHEN charge_category = 'Usage' THEN 'Tokens' END AS ConsumedUnit,
  CAST(list_cost AS DECIMAL(38, 10)) AS ContractedCost,
  CAST(unit_price AS DECIMAL(18, 10)) AS ContractedUnitPrice,
  CAST(billed AS DECIMAL(38, 10)) AS EffectiveCost,
  'AI FinOps Gateway' AS InvoiceIssuerName,
  CAST(list_cost AS DECIMAL(38, 10)) AS ListCost,
  CAST(unit_price AS DECIMAL(18, 10)) AS ListUnitPrice,
  CASE WHEN charge_category = 'Usage' THEN 'Standard' END AS PricingCategory,
  CAST(pricing_quantity AS DECIMAL(38, 10)) AS PricingQuantity,
  CASE WHEN charge_category = 'Usage' THEN '1000000 Tokens' END AS PricingUnit,
  'AI FinOps Gateway' AS ProviderName,
  provider AS PublisherName,
  CAST(NULL AS VARCHAR) AS RegionId,
  CAST(NULL AS VARCHAR) AS RegionName,
  CAST(NULL AS VARCHAR) AS ResourceId,
  CAST(NULL AS VARCHAR) AS ResourceName,
  CAST(NULL AS VARCHAR) AS ResourceType,
  'AI and Machine Learning' AS ServiceCategory,
  'AI FinOps Gateway LLM API' AS ServiceName,
  'Generative AI' AS ServiceSubcategory,
  CASE WHEN charge_category = 'Usage' THEN provider || '/' || model || '/' || token_direction END AS SkuId,
  meter AS SkuMeter,
  CASE
    WHEN charge_category = 'Usage'
      THEN '{"x_Model":"' || model || '","x_TokenDirection":"' || token_direction
           || '","x_PriceVersion":"' || price_version || '"}'
  END AS SkuPriceDetails,
  CASE
    WHEN charge_category = 'Usage' THEN provider || '/' || model || '/' || token_direction || '@' || price_version
  END AS SkuPriceId,
  department_id AS SubAccountId,
  department_id AS SubAccountName,
  '{"project":"' || project_id || '","user":"' || user_id || '","environment":"' || environment || '"}' AS Tags,
  department_id AS x_DepartmentId,
  project_id AS x_ProjectId,
  user_id AS x_UserId,
  environment AS x_Environment,
  model AS x_Model,
  token_direction AS x_TokenDirection,
  price_version AS x_PriceVersion
FROM charges
ORDER BY ChargePeriodStart, SubAccountId, x_ProjectId, x_UserId, x_Environment, x_Model, ChargeCategory DESC,
         x_TokenDirection, x_PriceVersion
