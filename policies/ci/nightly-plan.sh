#!/bin/sh
# Plan the registry's cleanup with a policy kept in git, and publish the review.
# Never applies: a person reads plan.md, approves (regplan approve) and applies.
#
#   REGISTRY_DATA_DIR  the registry's storage (or REGISTRY_CONFIGURATION_PATH: its config)
#   REGPLAN_KEY_FILE   the planner's private key (0600)
#   REGPLAN_POLICY     the policy file            [policies/cleanup.yml]
#   REGPLAN_OUT        where plan.json, plan.md and plan.html go   [out]
#
# Exit 0: nothing to clean up. Exit 2: changes present, a signed plan awaits review.
# Anything else: an error (1: a mistake in the policy, every one printed with its line).
set -eu
policy=${REGPLAN_POLICY:-policies/cleanup.yml}
out=${REGPLAN_OUT:-out}
mkdir -p "$out"

regplan policy check "$policy"
set +e
regplan plan --policy "$policy" --key "$REGPLAN_KEY_FILE" -o "$out/plan.json" -q \
  --detailed-exitcode
code=$?
set -e
case $code in
  0)
    rm -f "$out/plan.json"
    echo "Nothing to clean up under $policy."
    ;;
  2)
    regplan show "$out/plan.json" --format markdown > "$out/plan.md"
    regplan show "$out/plan.json" --format html > "$out/plan.html"
    echo "Changes present: review $out/plan.md; approve with regplan approve $out/plan.json."
    ;;
esac
exit "$code"
