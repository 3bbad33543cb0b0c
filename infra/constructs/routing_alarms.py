"""An alarm per routed tier when its strong-call share runs over target (``finops.gateway.route_metrics``).

Share control (``finops.routing.share_control``, ``fleet_scores``) holds each tier's ``strong_share`` of
``auto`` calls; this is its check from outside. Over each hour, ``RoutedCalls`` by ``ModelClass`` for the tier
gives the strong share; the alarm fires when it is more than ``MARGIN`` points above target, once the tier has
routed at least ``MIN_CALLS`` calls that hour (a handful of calls says nothing), and notifies the budget alerts
topic. What sends it up: the fleet's score store failing for long (the validation cut-off is then in use),
a sudden change of traffic before the window follows it, or a ladder edited without its targets.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from constructs import Construct
from finops.gateway.route_metrics import METRIC, NAMESPACE
from finops.routing.policy import RoutingPolicy, load_routing_policy

from infra.constructs.budgets import BudgetAlerts

MARGIN = 15.0  # percentage points over the tier's target strong share
MIN_CALLS = 100  # routed calls in the hour before the share is judged
PERIOD = Duration.hours(1)


class RoutingShareAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alerts: BudgetAlerts,
                 policy: RoutingPolicy | None = None) -> None:
        super().__init__(scope, construct_id)
        policy = policy or load_routing_policy()
        alerts.allow_cloudwatch_alarms()
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, tier in sorted(policy.tiers.items()):
            if len(tier.classes) < 2 or tier.strong is None:
                continue  # one class: nothing is routed; no strong model: no strong share to watch
            metrics = {cls: cloudwatch.Metric(namespace=NAMESPACE, metric_name=METRIC, statistic="Sum",
                                              period=PERIOD, dimensions_map={"Tier": name, "ModelClass": cls})
                       for cls in tier.classes}
            total = " + ".join(f"FILL({cls}, 0)" for cls in tier.classes)
            share = cloudwatch.MathExpression(
                expression=f"IF(({total}) >= {MIN_CALLS}, 100 * FILL(strong, 0) / ({total}), 0)",
                using_metrics=metrics, period=PERIOD, label=f"{name}: strong-call share (%)")
            target = 100 * tier.strong_share
            alarm = cloudwatch.Alarm(
                self, f"StrongShare{name.capitalize()}", metric=share, threshold=target + MARGIN,
                evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=(f"Tier {name}: more than {target + MARGIN:.0f}% of an hour's auto calls went to "
                                   f"the strong model (target {target:.0f}%). See docs/router.md, share control."))
            alarm.add_alarm_action(actions.SnsAction(alerts.topic))
            self.alarms[name] = alarm
