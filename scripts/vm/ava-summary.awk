# Usage: awk -v rc=EXIT_CODE -f scripts/vm/ava-summary.awk OUTPUT.log
# Turn ava's output into one "N passed, N failed" line. ava prints "N tests passed" only
# when nothing failed, so passes are counted from its per-test lines ("✔ title",
# "✔ [expected fail] title"), failures from "✘ [fail]: ..." / "✘ [unexpected pass]: ..."
# and the summary's failed/uncaught/unhandled/pending counts, skips from its summary.
# A command that is not ava (--cmd) counts as one test: passed when it exits 0; a non-zero
# exit with no failed test counted (ava found no files, crashed, timed out) is one failure.
/^ *(✔|√) / { tp++ }
/^ *(✘|×) \[(fail|unexpected pass)\]/ { tf++ }
/^ *[0-9]+ tests? passed$/ { sp = $1; ava = 1 }
/^ *[0-9]+ (tests?|hooks?) failed$/ { sf += $1; ava = 1 }
/^ *[0-9]+ tests? (skipped|todo)$/ { s += $1; ava = 1 }
/^ *[0-9]+ known failures?$/ { ava = 1 }
/^ *[0-9]+ uncaught exceptions?$/ { x += $1; ava = 1 }
/^ *[0-9]+ unhandled rejections?$/ { x += $1; ava = 1 }
/^ *[0-9]+ tests? remained pending after a timeout$/ { x += $1; ava = 1 }
END {
	p = (sp > tp) ? sp : tp
	f = ((sf > tf) ? sf : tf) + x
	if (!ava && !tp && !tf) { p = (rc == 0) ? 1 : 0 }
	if (rc != 0 && f == 0) f = 1
	printf "%d passed, %d failed", p, f
	if (s) printf ", %d skipped", s
	printf "\n"
}
