"""The policies the demo compares Nudge's with. None of them ships: decide's only policy is
``shared.domain.policy.RulesPolicy``; the demo installs these into its local decide function.

- "popularity" needs no policy of its own: it is RulesPolicy serving the popularity model without
  exploration (and, having no calibration file, without the engagement test).
- ``ModelOnlyPolicy``: the model's best eligible item pushed at every decision, no threshold, caps,
  fatigue or quiet hours (consent and a push token still apply): what pushing "whatever the model
  says" costs.
- ``RandomItemPolicy``: Nudge's rules decide whether and when; the item is uniform among the
  eligible ones, with its propensity recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.domain.decision import Action, Reason
from shared.domain.policy import (
    Policy,
    PolicyConfig,
    RulesPolicy,
    Situation,
    Verdict,
    eligible_candidates,
    may_reach,
    supporting_history,
    varied_candidates,
)


@dataclass(frozen=True)
class ModelOnlyPolicy:
    name: str = "model-only"

    def __call__(self, situation: Situation) -> Verdict:
        refusal = may_reach(situation.state)
        if refusal is not None:
            return refusal
        eligible = eligible_candidates(situation)
        if not eligible:
            return Verdict(Action.SILENCE, [Reason.NO_CANDIDATE])
        best = eligible[0]
        support = supporting_history(situation.state, situation.catalog.get(best.item_id), situation.catalog)
        return Verdict(Action.PUSH, [Reason.SCORE], item_id=best.item_id, score=best.score, supporting_items=support)


@dataclass(frozen=True)
class RandomItemPolicy:
    config: PolicyConfig
    name: str = "random-item"

    def __call__(self, situation: Situation) -> Verdict:
        verdict = RulesPolicy(replace(self.config, exploration_share=0.0))(situation)
        if verdict.action is not Action.PUSH:
            return verdict
        eligible = varied_candidates(situation, self.config.diversity_window)
        # Uniform, fixed by the decision id like exploration, so a retry picks the same item.
        chosen = eligible[min(int(situation.draws[1] * len(eligible)), len(eligible) - 1)]
        return replace(
            verdict,
            item_id=chosen.item_id,
            score=chosen.score,
            supporting_items=supporting_history(
                situation.state, situation.catalog.get(chosen.item_id), situation.catalog
            ),
            propensity=1.0 / len(eligible),
            candidates=tuple(c.item_id for c in eligible),
        )


def install(name: str) -> None:
    """Make the decide function of a local stack use the baseline ``name``. Call it inside the
    function's container (``LocalPipeline.run_inside``), so the policy is built from the container's
    own modules, and its settings (quiet hours, caps) come from the function's environment."""
    from shared.plumbing import bootstrap

    settings = bootstrap.decide_settings()
    config = PolicyConfig(
        daily_push_cap=settings.daily_push_cap,
        score_threshold=settings.score_threshold,
        quiet_hours_start=settings.quiet_hours_start,
        quiet_hours_end=settings.quiet_hours_end,
    )
    policies: dict[str, Policy] = {"model": ModelOnlyPolicy(), "random": RandomItemPolicy(config)}
    bootstrap.install_policy(policies[name])
