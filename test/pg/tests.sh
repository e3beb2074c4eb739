# tests.sh - the scripted tests: concurrency, cancellation, worker faults,
# dump and restore, no preloading, a client pool through pgbouncer.  Each
# prints what it measured.

test_concurrent_sessions_while_training() {
  # a prompt trains while four sessions classify
  q -c "$LONG_TRAINING" >/dev/null 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 30
  check $? "training is running"
  local pids=() start; start=$(now)
  for s in 1 2 3 4; do
    ( for i in $(seq 1 25); do
        q -c "SELECT ptune.classify('toy', text) FROM toy WHERE id % 25 = $i % 25" || exit 1
        q -c "SELECT ptune.classify('toy', array_agg(text)) FROM toy WHERE id % 10 = $s" || exit 1
      done > "$WORK/session_$s.out" ) &
    pids+=($!)
  done
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  local seconds; seconds=$(elapsed "$start")
  check $failed "4 sessions x 50 queries while training: $failed sessions failed (${seconds} s)"
  local bad; bad=$(cat "$WORK"/session_*.out | grep -cvE '^(this|that|\{[a-z,]+\})$' || true)
  check "$bad" "every answer is a label ($bad others)"
  [[ $(q -c "SELECT count(*) FROM ptune.training_progress WHERE step > 0") == 1 ]]
  check $? "the training kept running meanwhile"
  q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null
  wait "$trainer" 2>/dev/null
  return 0
}

test_cancel_training_stops_within_a_second() {
  q -c "$LONG_TRAINING" > "$WORK/cancel.out" 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 2" 30
  local pid; pid=$(q -c "SELECT pid FROM ptune.training_progress")
  local start; start=$(now)
  q -c "SELECT pg_cancel_backend($pid)" >/dev/null
  wait "$trainer"
  local seconds; seconds=$(elapsed "$start")
  (( $(echo "$seconds < 1.0" | bc) ))
  check $? "cancel returned in ${seconds} s"
  grep -q "canceling statement due to user request" "$WORK/cancel.out"
  check $? "the caller saw: $(grep ERROR "$WORK/cancel.out" | head -1)"
  wait_for "SELECT count(*) = 0 FROM ptune.training_progress" 5
  check $? "the worker dropped the training"
  [[ $(q -c "SELECT count(*) FROM ptune.prompts WHERE task = 'long'") == 0 ]]
  check $? "nothing was stored"
  [[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]]
  check $? "the worker serves the next request"
}

test_statement_timeout() {
  local start out; start=$(now)
  out=$(q_any -c "SET statement_timeout = '1500ms'" -c "$LONG_TRAINING")
  local seconds; seconds=$(elapsed "$start")
  [[ $out == *"statement timeout"* ]]
  check $? "train_prompt under statement_timeout 1.5 s ended after ${seconds} s: ${out##*ERROR:  }"
  (( $(echo "$seconds < 3.0" | bc) ))
  check $? "promptly"
  wait_for "SELECT count(*) = 0 FROM ptune.training_progress" 5
  check $? "the worker dropped the training"
  out=$(q_any -c "SET statement_timeout = '5ms'" \
              -c "SELECT ptune.classify('toy', array_agg(t.text)) FROM toy t, generate_series(1, 200)")
  [[ $out == *"statement timeout"* ]]
  check $? "a long classify under statement_timeout 5 ms: ${out##*ERROR:  }"
  # the worker drops a given-up request's remaining rows instead of computing them all
  local before after
  before=$(q -c "SELECT rows_classified FROM ptune.status()")
  out=$(q_any -c "SET ptune.request_timeout = '20ms'" \
              -c "SELECT ptune.classify('toy', array_agg(t.text || ' ' || g)) FROM toy t, generate_series(1, 6) g")
  sleep 1.5   # time enough to compute all 960 rows
  after=$(q -c "SELECT rows_classified FROM ptune.status()")
  [[ $out == *"timed out"* ]] && (( after - before < 960 ))
  check $? "a request given up after 20 ms had $((after - before)) of its 960 rows computed"
  # one request of 1000 texts takes longer than 5 ms
  out=$(q_any -c "SET ptune.request_timeout = '5ms'" \
              -c "SELECT ptune.classify('toy', array_agg(t.text)) FROM toy t, generate_series(1, 6) g WHERE g * 160 + t.id <= 1160")
  [[ $out == *"ptune request timed out"* ]]
  check $? "the same under ptune.request_timeout: ${out##*ERROR:  }"
  [[ $(q -c "SELECT queued + running FROM ptune.status()") == 0 ]]
  check $? "no request is left behind"
}

test_terminate_waiting_session() {
  q -c "$LONG_TRAINING" >/dev/null 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 30
  q -c "SELECT pg_terminate_backend(pid) FROM ptune.training_progress" >/dev/null
  wait "$trainer" 2>/dev/null
  wait_for "SELECT queued + running = 0 FROM ptune.status()" 5
  check $? "the terminated session's slot was freed"
  wait_for "SELECT count(*) = 0 FROM ptune.training_progress" 5
  check $? "its training was dropped"
  [[ $(q -c "SELECT ptune.classify('toy', 'a cat') IS NOT NULL") == t ]]
  check $? "the worker is not stuck"
}

test_more_requests_than_slots() {
  # the cluster runs with ptune.request_slots = 4
  local pids=() failed=0
  for s in $(seq 1 16); do
    q -c "SELECT count(ptune.classify('toy', text)) FROM toy" > "$WORK/slots_$s.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  check $failed "16 concurrent sessions on 4 slots: $failed failed"
  [[ $(cat "$WORK"/slots_*.out | sort -u) == 160 ]]
  check $? "each classified all 160 rows"
}

test_sigterm_worker_mid_request() {
  local before; before=$(q -c "SELECT generation FROM ptune.status()")
  q -v VERBOSITY=verbose -c "$LONG_TRAINING" > "$WORK/sigterm.out" 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 30
  local start; start=$(now)
  kill -TERM "$(worker_pid)"
  wait "$trainer"
  check $(( $? == 0 )) "the caller got an error: $(grep ERROR "$WORK/sigterm.out" | head -1)"
  ! grep -qE "ERROR:  (08|57P0[123])" "$WORK/sigterm.out"
  check $? "its SQLSTATE is neither class 08 nor 57P01-57P03 (connection pools keep the connection)"
  local back; back=$(wait_ready 30)
  check $? "the worker came back after $(echo "$(elapsed "$start")" | cut -c1-4) s"
  [[ $(q -c "SELECT generation FROM ptune.status()") -gt $before ]]
  check $? "as a new generation"
  [[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]]
  check $? "the next call works"
}

test_kill9_worker_crash_recovery() {
  local prompts; prompts=$(q -c "SELECT md5(string_agg(prompt::text, ',' ORDER BY task, version, member)) FROM ptune.prompts")
  local start; start=$(now)
  kill -KILL "$(worker_pid)"
  # the postmaster restarts every session; wait for it to accept connections again
  until q -c "SELECT 1" >/dev/null 2>&1; do sleep 0.1; done
  local up; up=$(elapsed "$start")
  wait_ready 60 >/dev/null
  check $? "crash recovery: server back after ${up:0:4} s, worker ready after $(elapsed "$start" | cut -c1-4) s"
  [[ $(q -c "SELECT md5(string_agg(prompt::text, ',' ORDER BY task, version, member)) FROM ptune.prompts") == "$prompts" ]]
  check $? "every committed prompt is intact"
  [[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]]
  check $? "classification works again"
}

test_dump_and_restore() {
  q -c "SELECT text, ptune.classify('toy', text) FROM toy ORDER BY id" > "$WORK/before.txt"
  q -c "SELECT t.text, s.label, round(s.probability::numeric, 6) FROM toy t, ptune.classify_scores('toy', t.text) s ORDER BY t.id, s.label" > "$WORK/scores_before.txt"
  "${RUN[@]}" "$PGBIN/pg_dump" -h "$PGSOCK" -p "$PGPORT" -Fc -f "$WORK/dump" ptune_test
  check $? "pg_dump"
  q -d postgres -c "DROP DATABASE IF EXISTS ptune_restored" -c "CREATE DATABASE ptune_restored"
  "${RUN[@]}" "$PGBIN/pg_restore" -h "$PGSOCK" -p "$PGPORT" -d ptune_restored "$WORK/dump" 2>"$WORK/restore.err"
  check $? "pg_restore $(head -1 "$WORK/restore.err")"
  [[ $(DB=ptune_restored q -c "SELECT count(*) FROM ptune.prompts") == $(q -c "SELECT count(*) FROM ptune.prompts") ]]
  check $? "every prompt row was restored"
  DB=ptune_restored q -c "SELECT text, ptune.classify('toy', text) FROM toy ORDER BY id" > "$WORK/after.txt"
  DB=ptune_restored q -c "SELECT t.text, s.label, round(s.probability::numeric, 6) FROM toy t, ptune.classify_scores('toy', t.text) s ORDER BY t.id, s.label" > "$WORK/scores_after.txt"
  [[ -s $WORK/after.txt && -s $WORK/scores_after.txt ]] &&
    cmp -s "$WORK/before.txt" "$WORK/after.txt" && cmp -s "$WORK/scores_before.txt" "$WORK/scores_after.txt"
  check $? "the restored prompt classifies identically ($(wc -l < "$WORK/after.txt") rows, $(wc -l < "$WORK/scores_after.txt") probabilities to 6 digits)"
}

test_model_missing_then_fixed() {
  local good; good=$(q -c "SHOW ptune.model_path")
  q -c "ALTER SYSTEM SET ptune.model_path = '/nonexistent/model'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT worker_state = 'failed' FROM ptune.status()" 10
  check $? "a missing model: worker state failed"
  local out; out=$(q_any -c "SELECT ptune.classify('toy', 'a dog')")
  [[ $out == *"model is not loaded"* && $out == *"/nonexistent/model/config.json"* ]]
  check $? "callers get: $(echo "$out" | head -2 | tr '\n' ' ')"
  q -c "ALTER SYSTEM SET ptune.model_path = '$good'" -c "SELECT pg_reload_conf()" >/dev/null
  local start; start=$(now)
  wait_ready 30 >/dev/null
  check $? "fixed and reloaded: ready after $(elapsed "$start" | cut -c1-4) s"
  q -c "ALTER SYSTEM RESET ptune.model_path" -c "SELECT pg_reload_conf()" >/dev/null
  [[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]]
  check $? "classification works again"
}

# Bytes of dynamic shared memory segments (dynamic_shared_memory_type = posix).
dsm_bytes() { du -cb /dev/shm/PostgreSQL.* 2>/dev/null | tail -1 | cut -f1; }

test_cancelled_slot_waits_free_everything() {
  # every slot held by requests the (stopped) worker cannot answer; then
  # 1,000 requests of ~180 kB each give up while they wait for a slot
  local base_dsm base_payload; base_dsm=$(dsm_bytes)
  base_payload=$(q -c "SELECT payload_bytes FROM ptune.status()")
  local wpid; wpid=$(worker_pid)
  kill -STOP "$wpid"
  local holders=()
  for s in 1 2 3 4; do
    q -c "SELECT ptune.classify('toy', 'a dog')" >/dev/null 2>&1 &
    holders+=($!)
  done
  wait_for "SELECT free_slots = 0 FROM ptune.status()" 10
  check $? "4 requests hold the 4 slots"
  local big="array_fill('a dog and a cat'::text, ARRAY[12000])"
  local start out; start=$(now)
  out=$(q -c "SET ptune.request_timeout = '2ms'" -c "DO \$\$
    DECLARE n int := 0;
    BEGIN
      FOR i IN 1..1000 LOOP
        BEGIN PERFORM ptune.classify('toy', $big);
        EXCEPTION WHEN query_canceled THEN n := n + 1; END;
      END LOOP;
      RAISE NOTICE 'timed out: %', n;
    END \$\$" 2>&1)
  [[ $out == *"timed out: 1000"* ]]
  check $? "1,000 requests timed out waiting for a slot in $(elapsed "$start" | cut -c1-4) s (${out##*NOTICE:  })"
  # statement_timeout, a query cancel and a terminated session while waiting
  for i in $(seq 1 20); do
    q_any -c "SET statement_timeout = '3ms'" -c "SELECT ptune.classify('toy', $big)" >/dev/null
  done
  q -c "SELECT ptune.classify('toy', $big)" >/dev/null 2>&1 &
  local c=$!
  q -c "SELECT ptune.classify('toy', $big)" >/dev/null 2>&1 &
  local t=$!
  wait_for "SELECT waiting = 2 FROM ptune.status()" 10
  check $? "two sessions wait in line"
  q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT ptune.classify(''toy'', array_fill%' AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1" >/dev/null
  q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT ptune.classify(''toy'', array_fill%' AND pid <> pg_backend_pid() AND state = 'active'" >/dev/null
  wait $c $t 2>/dev/null
  [[ $(q -c "SELECT waiting FROM ptune.status()") == 0 ]]
  check $? "no session is left in the line"
  kill -CONT "$wpid"
  wait "${holders[@]}"
  check $? "the 4 slot holders were answered once the worker went on"
  wait_for "SELECT free_slots = 4 AND queued + running = 0 FROM ptune.status()" 10
  check $? "all 4 slots are free: $(q -c "SELECT free_slots, queued, running FROM ptune.status()")"
  local payload dsm; payload=$(q -c "SELECT payload_bytes FROM ptune.status()"); dsm=$(dsm_bytes)
  [[ $payload == "$base_payload" ]]
  check $? "payload bytes in shared memory back to $base_payload (now $payload)"
  (( dsm <= base_dsm ))
  check $? "dynamic shared memory back to its baseline: $dsm bytes (was $base_dsm)"
}

test_max_shared_memory_errors() {
  # ptune.max_shared_memory at its floor (8 MB): a request that can never fit is refused at once
  # (54000); requests that fit, but not next to those in flight, fail with 53200; neither leaks.
  # A task of max_input_tokens 4096 keeps texts of up to 262 kB, so one request (1,024 texts at
  # most) can exceed 8 MB.
  q -c "SET client_min_messages = warning" -c "SELECT 1 FROM ptune.train_prompt('wide', 'toy', 'text', 'label',
    prompt_length => 4, init => 'random_uniform', optimizer => 'adam', batch_size => 4, epochs => 0,
    max_steps => 2, max_input_tokens => 4096)" >/dev/null
  local base_dsm base_payload; base_dsm=$(dsm_bytes)
  base_payload=$(q -c "SELECT payload_bytes FROM ptune.status()")
  q -c "ALTER SYSTEM SET ptune.max_shared_memory = '8MB'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
  local texts="array_fill(repeat('a dog ', 1500), ARRAY[%d])"   # texts of 9 kB
  local out; out=$(q_any -c '\set VERBOSITY verbose' -c "SELECT count(*) FROM unnest(ptune.classify('wide', $(printf "$texts" 1000)))")
  [[ $out == *54000* && $out == *"does not fit in ptune.max_shared_memory (8192 kB)"* &&
     $out == *"HINT:  Send fewer or shorter rows per call, or raise ptune.max_shared_memory."* ]]
  check $? "9 MB in one request: ${out:0:150}"
  # the worker stopped, so requests stay in shared memory: 4 calls of 2.5 MB cannot all fit in 8 MB
  local wpid; wpid=$(worker_pid)
  local dsm_after=()
  for round in 1 2; do
    rm -f "$WORK"/shm_*.out
    kill -STOP "$wpid"
    local pids=()
    for s in 1 2 3 4; do
      q_any -c '\set VERBOSITY verbose' -c "SELECT count(*) FROM unnest(ptune.classify('wide', $(printf "$texts" 280)))" \
        > "$WORK/shm_$s.out" 2>&1 &
      pids+=($!)
      # until this call holds a slot or was refused
      for try in $(seq 1 100); do
        (( $(q -c "SELECT queued + running FROM ptune.status()") + $(cat "$WORK"/shm_*.out | grep -c ERROR) >= s )) && break
        sleep 0.1
      done
    done
    local refused; refused=$(grep -l "53200" "$WORK"/shm_*.out 2>/dev/null | wc -l)
    (( refused >= 1 ))
    check $? "round $round: $refused of 4 concurrent 2.5 MB calls refused: $(grep -h -m1 ERROR "$WORK"/shm_*.out | head -1 | cut -c1-110)"
    grep -q "HINT:  Retry when fewer requests run, or raise ptune.max_shared_memory." "$WORK"/shm_*.out &&
      grep -q "DETAIL:  Requests in flight use [0-9]* bytes of ptune.max_shared_memory (8192 kB)." "$WORK"/shm_*.out
    check $? "the error says what is in flight and what to do"
    # the others would take minutes of tiny-model compute (texts of 1,500 tokens): cancel them
    q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%classify(''wide''%' AND pid <> pg_backend_pid()" >/dev/null
    kill -CONT "$wpid"
    wait "${pids[@]}"
    local cancelled; cancelled=$(grep -l "canceling statement due to user request" "$WORK"/shm_*.out | wc -l)
    [[ $((cancelled + refused)) == 4 ]]
    check $? "the $cancelled others were cancelled"
    wait_for "SELECT free_slots = 4 AND queued + running = 0 FROM ptune.status()" 10
    dsm_after+=("$(dsm_bytes)")
  done
  q -c "ALTER SYSTEM RESET ptune.max_shared_memory" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT free_slots = 4 AND queued + running = 0 FROM ptune.status()" 10
  check $? "all 4 slots are free"
  local payload; payload=$(q -c "SELECT payload_bytes FROM ptune.status()")
  [[ $payload == "$base_payload" ]]
  check $? "payload bytes back to $base_payload (now $payload)"
  # the area keeps segments it grew for reuse (PostgreSQL's DSA returns none), within the limit
  (( dsm_after[1] <= dsm_after[0] && dsm_after[1] <= base_dsm + 8 * 1048576 ))
  check $? "shared memory stays within the limit and does not grow on a second round: ${dsm_after[*]} bytes (before: $base_dsm)"
  q -c "SELECT ptune.drop_task('wide')" >/dev/null
}

test_slot_waits_are_fifo() {
  # all 4 slots held (the worker stopped); 5 sessions queue in a known order, each sending a
  # request of a distinct size; freeing one slot at a time must serve them in that order
  # (who took a slot shows in payload_bytes: session i sends ~i x 100 kB)
  local wpid; wpid=$(worker_pid)
  kill -STOP "$wpid"
  local holders=() waiters=()
  for s in 1 2 3 4; do
    q -c "SELECT ptune.classify('toy', 'a dog')" >/dev/null 2>&1 &
    holders+=($!)
  done
  wait_for "SELECT free_slots = 0 FROM ptune.status()" 10
  check $? "4 requests hold the 4 slots"
  for i in 1 2 3 4 5; do
    q -c "SELECT count(*) FROM unnest(ptune.classify('toy', array_fill(repeat('a dog ', 166), ARRAY[$((i * 100))])))" \
      > "$WORK/fifo_$i.out" 2>&1 &
    waiters+=($!)
    wait_for "SELECT waiting = $i FROM ptune.status()" 10
  done
  local order="" before after
  local free_next=("${holders[@]}")
  for k in 0 1 2 3 4; do
    before=$(q -c "SELECT payload_bytes FROM ptune.status()")
    if (( k < 4 )); then
      # cancel a holder: its pending slot frees at once
      q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT ptune.classify(''toy'', ''a dog'')' AND state = 'active' LIMIT 1" >/dev/null
    else
      # then free the slot of the first waiter, for the fifth
      q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%ARRAY[100]%' AND pid <> pg_backend_pid()" >/dev/null
    fi
    wait_for "SELECT waiting = $((4 - k)) FROM ptune.status()" 10
    sleep 0.2
    after=$(q -c "SELECT payload_bytes FROM ptune.status()")
    # (the last step also freed the first waiter's ~100 kB)
    order+="$(echo "($after - $before + ($k == 4) * 102400) / 102400 + 0.5" | bc -l | cut -d. -f1)"
  done
  [[ $order == 12345 ]]
  check $? "waiters took the freed slots in arrival order: $order"
  kill -CONT "$wpid"
  wait "${holders[@]}" "${waiters[@]}" 2>/dev/null
  local answered=0
  for i in 2 3 4 5; do [[ $(cat "$WORK/fifo_$i.out") == $((i * 100)) ]] && answered=$((answered + 1)); done
  [[ $answered == 4 ]]
  check $? "the 4 waiters not cancelled were answered ($answered)"
  wait_for "SELECT free_slots = 4 AND waiting = 0 FROM ptune.status()" 10
  check $? "all slots free, nobody waiting"
}

test_trainings_leave_slots_for_classification() {
  # 4 slots: trainings may hold 2; ptune.max_trainings_per_role is 2
  q -c "$LONG_TRAINING" >/dev/null 2>&1 &
  local t1=$!
  q -c "${LONG_TRAINING/\'long\'/\'long2\'}" >/dev/null 2>&1 &
  local t2=$!
  wait_for "SELECT count(*) = 2 FROM ptune.training_progress WHERE step > 0" 30
  check $? "two trainings run"
  local out; out=$(q_any -c "\\set VERBOSITY verbose" -c "${LONG_TRAINING/\'long\'/\'long3\'}")
  [[ $out == *53400* && $out == *"already trains 2 prompts"* ]]
  check $? "a third training by the same role: ${out%%$'\n'*}"
  local start; start=$(now)
  [[ $(q -c "SELECT count(ptune.classify('toy', text)) FROM toy WHERE id <= 20") == 20 ]]
  check $? "classification still finds slots ($(elapsed "$start" | cut -c1-4) s for 20 rows)"
  q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null
  wait $t1 $t2 2>/dev/null
  wait_for "SELECT free_slots = 4 FROM ptune.status()" 10
  check $? "slots free again"
}

test_worker_of_another_build() {
  # the ptune libraries replaced while the server runs: the new worker must refuse the old
  # shared memory with a clear message and stop, not crash and restart every second
  make -s "$BUILD/ptune_worker_other_layout.so" >/dev/null || { check 1 "build the other-layout worker"; return; }
  local lib; lib="$(pg_config --pkglibdir)/ptune_worker.so"
  cp "$lib" "$WORK/ptune_worker.so.good"
  cp "$BUILD/ptune_worker_other_layout.so" "$lib"
  kill -TERM "$(worker_pid)"
  sleep 5
  cp "$WORK/ptune_worker.so.good" "$lib"
  local refused; refused=$(grep -c "ptune worker: not starting" "$base/server.log")
  [[ $refused == 1 ]]
  check $? "the worker of another build started once and stopped ($refused refusals in 5 s)"
  grep -q "shared memory was created by another build of ptune" "$base/server.log"
  check $? "the log says why: $(grep -m1 -A1 'created by another build' "$base/server.log" | tail -1 | cut -c1-120)"
  [[ $(q -c "SELECT worker_state FROM ptune.status()") == stopped ]]
  check $? "ptune.status() shows the worker stopped"
  "${RUN[@]}" "$PGBIN/pg_ctl" -D "$base/data" -l "$base/server.log" -w restart >/dev/null
  wait_ready 60 >/dev/null
  [[ $(q -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL") == t ]]
  check $? "after a restart with the right library, classification works"
}

test_classify_answered_inside_a_training_pass() {
  # a training's passes pause between layers to serve classification: one-row calls made while
  # a prompt trains are answered from inside its passes (ptune.status().training_pauses counts
  # the pauses that served something) and the training's steps stay those of an undisturbed run
  q -c "$LONG_TRAINING" >/dev/null 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 30
  check $? "training is running"
  local before; before=$(q -c "SELECT training_pauses FROM ptune.status()")
  local out slowest=0 answered=0
  for i in $(seq 1 20); do
    out=$(q -c '\timing on' -c "SELECT ptune.classify('toy', text) FROM toy WHERE id = $i")
    [[ ${out%%$'\n'*} == this || ${out%%$'\n'*} == that ]] && answered=$((answered + 1))
    slowest=$(echo "$out" | awk -v m="$slowest" '/^Time:/ {print ($2 > m ? $2 : m)}')
  done
  local after; after=$(q -c "SELECT training_pauses FROM ptune.status()")
  [[ $answered == 20 ]]
  check $? "20 one-row calls answered while training (slowest ${slowest} ms)"
  (( after > before ))
  check $? "training passes paused to serve them: $((after - before)) pauses served requests"
  [[ $(q -c "SELECT count(*) FROM ptune.training_progress WHERE step > 0") == 1 ]]
  check $? "the training went on"
  q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null
  wait "$trainer" 2>/dev/null
  wait_for "SELECT count(*) = 0 FROM ptune.training_progress" 5
  check $? "the cancelled training ended"
}

test_small_request_does_not_wait_behind_a_big_one() {
  # a call of 9,600 rows (requests of 1,024) is served in batches; a one-row request that arrives meanwhile
  # takes the next batch instead of waiting for the rest
  q -c "SELECT count(*) FROM (SELECT unnest(ptune.classify('toy', array_agg(t.text || ' ' || g))) FROM toy t, generate_series(1, 60) g) s" \
    > "$WORK/big.out" 2>&1 &
  local big=$!
  wait_for "SELECT running > 0 FROM ptune.status()" 10
  sleep 0.3
  # the query's own time (psql's \timing), not the connection's start on a busy machine
  local out took
  out=$(q -c '\timing on' -c "SELECT ptune.classify('toy', 'a dog') IS NOT NULL")
  took=$(echo "$out" | awk '/^Time:/ {print $2 / 1000}')
  kill -0 $big 2>/dev/null
  local still=$?
  [[ $out == t* ]] && (( $(echo "${took:-9} < 0.5" | bc) )) && [[ $still == 0 ]]
  check $? "a one-row call took ${took:0:5} s while the 9,600-row call was still running"
  wait $big
  [[ $(cat "$WORK/big.out") == 9600 ]]
  check $? "the big call then answered all its rows ($(cat "$WORK/big.out"))"
}

test_dump_and_restore_by_database_owner() {
  # alice owns a database and is no superuser: she installs ptune (a trusted
  # extension), bob trains a task there too, she dumps and restores it in
  # custom and plain formats, and every prompt classifies identically
  q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS alicedb" -c "DROP DATABASE IF EXISTS alice_c" \
    -c "DROP DATABASE IF EXISTS alice_p" -c "DROP ROLE IF EXISTS dump_alice" -c "DROP ROLE IF EXISTS dump_bob" \
    -c "CREATE ROLE dump_alice LOGIN" -c "CREATE ROLE dump_bob LOGIN" \
    -c "CREATE DATABASE alicedb OWNER dump_alice" -c "CREATE DATABASE alice_c OWNER dump_alice" \
    -c "CREATE DATABASE alice_p OWNER dump_alice"
  local out
  out=$(DB=alicedb q_any -U dump_alice -v ON_ERROR_STOP=1 -c "CREATE EXTENSION ptune" -f test/pg/toy.sql \
        -c "GRANT SELECT ON toy TO dump_bob" -c "SET client_min_messages = warning" \
        -c "SELECT version FROM ptune.train_prompt('alice_t', 'toy', 'text', 'label', prompt_length => 4,
              init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, epochs => 0, max_steps => 20,
              max_input_tokens => 16)")
  check $? "the database owner installs ptune and trains: ${out//$'\n'/ }"
  out=$(DB=alicedb q_any -U dump_bob -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
        -c "SELECT version FROM ptune.train_prompt('bob_t', 'toy', 'text', 'label', prompt_length => 4,
              init => 'random_uniform', optimizer => 'adam', learning_rate => 0.1, epochs => 0, max_steps => 20,
              max_input_tokens => 16, ensemble_size => 2)")
  check $? "another role trains in her database: ${out//$'\n'/ }"
  local classify="SELECT t.text, s.label, round(s.probability::numeric, 6) FROM toy t,
    LATERAL (SELECT * FROM ptune.classify_scores('alice_t', t.text) UNION ALL
             SELECT * FROM ptune.classify_scores('bob_t', t.text)) s ORDER BY t.id, s.label, 3"
  local owners="SELECT task, owner, active_version, versions FROM ptune.tasks ORDER BY task"
  DB=alicedb q -c "$classify" > "$WORK/owner_before.txt"
  DB=alicedb q -c "$owners" > "$WORK/owners_before.txt"
  "${RUN[@]}" "$PGBIN/pg_dump" -h "$PGSOCK" -p "$PGPORT" -U dump_alice -Fc -f "$WORK/alice.dump" alicedb 2>"$WORK/dump.err"
  check $? "pg_dump -Fc as the database owner $(head -1 "$WORK/dump.err")"
  "${RUN[@]}" "$PGBIN/pg_dump" -h "$PGSOCK" -p "$PGPORT" -U dump_alice -Fp -f "$WORK/alice.sql" alicedb 2>>"$WORK/dump.err"
  check $? "pg_dump -Fp as the database owner $(head -1 "$WORK/dump.err")"
  "${RUN[@]}" "$PGBIN/pg_restore" -h "$PGSOCK" -p "$PGPORT" -U dump_alice -d alice_c "$WORK/alice.dump" 2>"$WORK/restore_c.err"
  check $? "pg_restore as the database owner $(head -1 "$WORK/restore_c.err")"
  DB=alice_p q -U dump_alice -v ON_ERROR_STOP=1 -f "$WORK/alice.sql" >/dev/null 2>"$WORK/restore_p.err"
  check $? "psql -f of the plain dump as the database owner $(grep -m1 ERROR "$WORK/restore_p.err")"
  for db in alice_c alice_p; do
    DB=$db q -c "$classify" > "$WORK/owner_after_$db.txt"
    DB=$db q -c "$owners" > "$WORK/owners_after_$db.txt"
    [[ -s $WORK/owner_after_$db.txt ]] && cmp -s "$WORK/owner_before.txt" "$WORK/owner_after_$db.txt"
    check $? "$db classifies identically ($(wc -l < "$WORK/owner_after_$db.txt") probabilities to 6 digits)"
    cmp -s "$WORK/owners_before.txt" "$WORK/owners_after_$db.txt"
    check $? "$db keeps every task's owner and versions: $(tr '\n' ' ' < "$WORK/owners_after_$db.txt")"
  done
  out=$(DB=alice_c q_any -U dump_bob -c "SELECT ptune.drop_task('alice_t')")
  [[ $out == *'belongs to role "dump_alice"'* ]]
  check $? "ownership survives the restore: bob still cannot drop alice's task"
  # the installer owns the tables (for the restore) but not the views: a
  # view she could replace would run her functions as the superuser reading it
  out=$(DB=alicedb q_any -U dump_alice -c "CREATE OR REPLACE VIEW ptune.tasks AS SELECT * FROM ptune.tasks")
  [[ $out == *'must be owner of view tasks'* ]]
  check $? "the installing database owner cannot replace ptune.tasks: ${out//$'\n'/ }"
  out=$(DB=alice_c q -c "SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner), ' ' ORDER BY c.relname)
                          FROM pg_class c WHERE c.relnamespace = 'ptune'::regnamespace AND c.relkind IN ('r', 'v')")
  [[ $out == *'prompts:dump_alice'* && $out == *'task_owners:dump_alice'* && $out != *'tasks:dump_alice'* \
     && $out != *'versions:dump_alice'* ]]
  check $? "after the restore the tables are hers, the views are not: $out"
  # README: only a superuser changes EXECUTE rights on ptune's functions in a
  # database where a non-superuser installed it
  local can_train="SELECT has_function_privilege('dump_bob', p.oid, 'EXECUTE') FROM pg_proc p
                   WHERE p.proname = 'train_prompt' AND p.pronamespace = 'ptune'::regnamespace"
  out=$(DB=alicedb q_any -U dump_alice -c "REVOKE EXECUTE ON FUNCTION ptune.train_prompt FROM PUBLIC" -c "$can_train")
  [[ $out == *'no privileges could be revoked'* && $out == *t ]]
  check $? "the installing database owner's REVOKE EXECUTE does nothing: ${out//$'\n'/ }"
  out=$(DB=alicedb q -c "REVOKE EXECUTE ON FUNCTION ptune.train_prompt FROM PUBLIC" -c "$can_train")
  [[ $out == f ]]
  check $? "a superuser's REVOKE EXECUTE takes training away from bob: $out"
  # a schema "ptune" made beforehand by another role is refused
  q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS squatdb" -c "CREATE DATABASE squatdb" >/dev/null
  DB=squatdb q -c "GRANT CREATE ON DATABASE squatdb TO dump_bob" >/dev/null
  DB=squatdb q -U dump_bob -c "CREATE SCHEMA ptune"
  out=$(DB=squatdb q_any -c "CREATE EXTENSION ptune")
  [[ $out == *'schema "ptune" belongs to role "dump_bob"'* ]] \
    && [[ $(DB=squatdb q -c "SELECT count(*) FROM pg_extension WHERE extname = 'ptune'") == 0 ]]
  check $? "CREATE EXTENSION refuses a schema ptune another role made: ${out//$'\n'/ }"
  q -d postgres -c "DROP DATABASE squatdb" >/dev/null
  q -d postgres -c "DROP DATABASE alicedb" -c "DROP DATABASE alice_c" -c "DROP DATABASE alice_p" \
    -c "DROP ROLE dump_alice" -c "DROP ROLE dump_bob" >/dev/null
}

test_no_preload_is_an_error_not_fatal() {
  # a second cluster without shared_preload_libraries
  local data="$base/nopreload" port=$((PGPORT + 1))
  "${RUN[@]}" "$PGBIN/initdb" -D "$data" -A trust >/dev/null || { check 1 "initdb"; return; }
  printf "port = %s\nunix_socket_directories = '%s'\nlisten_addresses = ''\n" "$port" "$base" >> "$data/postgresql.conf"
  "${RUN[@]}" "$PGBIN/pg_ctl" -D "$data" -l "$base/nopreload.log" -w start >/dev/null || { check 1 "start"; return; }
  local p=("${RUN[@]}" "$PGBIN/psql" -X -At -h "$PGSOCK" -p "$port" -d postgres)
  local out
  out=$("${p[@]}" -c "CREATE EXTENSION ptune" -c "SELECT 'still connected'" 2>&1)
  [[ $out == *"ERROR:  ptune must be loaded by shared_preload_libraries"* &&
     $out == *"HINT:  Add ptune to shared_preload_libraries"* && $out == *"still connected"* ]]
  check $? "CREATE EXTENSION: ${out//$'\n'/ | }"
  out=$("${p[@]}" -c "LOAD 'ptune'" -c "LOAD 'ptune'" -c "SELECT 'still connected'" 2>&1)
  [[ $(grep -c "ERROR:  ptune must be loaded" <<< "$out") == 2 && $out == *"still connected"* ]]
  check $? "LOAD, twice: ${out//$'\n'/ | }"
  "${p[@]}" -c "ALTER DATABASE postgres SET session_preload_libraries = 'ptune'" >/dev/null
  out=$("${p[@]}" -c "SELECT 'connected'" -c "CREATE EXTENSION ptune" 2>&1)
  [[ $out == *"WARNING:  ptune must be loaded by shared_preload_libraries"* && $out == *connected* &&
     $out == *"ERROR:  ptune is not loaded"* ]]
  check $? "session_preload_libraries: connections work, CREATE EXTENSION fails: ${out//$'\n'/ | }"
  ! grep -q FATAL "$base/nopreload.log"
  check $? "no FATAL in the server log"
  "${RUN[@]}" "$PGBIN/pg_ctl" -D "$data" -m fast stop >/dev/null
  rm -rf "$data"
}

test_pgbouncer_transaction_pool_survives_worker_errors() {
  if ! command -v pgbouncer >/dev/null; then check 1 "pgbouncer is not installed (scripts/install_deps.sh)"; return; fi
  local dir="$base/bouncer" port=$((PGPORT + 2))
  mkdir -p "$dir"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
ptune_test = host=$PGSOCK port=$PGPORT dbname=ptune_test
[pgbouncer]
listen_addr =
listen_port = $port
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  echo '"postgres" ""' > "$dir/users.txt"
  [[ $(id -u) -eq 0 ]] && chown -R postgres "$dir"
  "${RUN[@]}" pgbouncer -d -q "$dir/pgbouncer.ini" || { check 1 "pgbouncer starts"; return; }
  # 6 clients through a pool of 2 server connections, each on one client
  # connection for the whole run, while the worker fails and restarts;
  # client 6 sends large arrays, so a request is in flight when it restarts
  local pids=() c
  for c in 1 2 3 4 5 6; do
    { echo '\set VERBOSITY verbose'
      for i in $(seq 1 150); do
        if ((c == 6)); then
          echo "SELECT CASE WHEN ptune.classify('toy', array_agg(t.text || g)) IS NOT NULL THEN 'ok' END FROM toy t, generate_series(1, 20) g;"
        else
          echo "SELECT CASE WHEN ptune.classify('toy', 'a dog $i') IS NOT NULL THEN 'ok' END;"
        fi
        echo "SELECT pg_sleep(0.05);"
      done; } > "$dir/client_$c.sql"
    "${RUN[@]}" "$PGBIN/psql" -X -At -h "$dir" -p "$port" -d ptune_test -f "$dir/client_$c.sql" \
      > "$dir/client_$c.out" 2>&1 &
    pids+=($!)
  done
  # client 7 trains until the worker restarts under it, then classifies
  { echo '\set VERBOSITY verbose'
    echo "SET client_min_messages = warning;"
    echo "${LONG_TRAINING/\'long\'/\'bouncer_long\'};"
    for i in $(seq 1 40); do
      echo "SELECT CASE WHEN ptune.classify('toy', 'a cat $i') IS NOT NULL THEN 'ok' END;"
      echo "SELECT pg_sleep(0.25);"
    done; } > "$dir/client_7.sql"
  "${RUN[@]}" "$PGBIN/psql" -X -At -h "$dir" -p "$port" -d ptune_test -f "$dir/client_7.sql" \
    > "$dir/client_7.out" 2>&1 &
  pids+=($!)
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE task = 'bouncer_long' AND step > 0" 30
  check $? "client 7's training runs"
  kill -TERM "$(worker_pid)"          # the worker restarts under the training
  wait_ready 30 >/dev/null
  q -c "ALTER SYSTEM SET ptune.model_path = '/nonexistent/model'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT worker_state = 'failed' FROM ptune.status()" 10
  sleep 1.5                           # callers get "model is not loaded"
  q -c "ALTER SYSTEM RESET ptune.model_path" -c "SELECT pg_reload_conf()" >/dev/null
  wait_ready 30 >/dev/null
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  local oks errors lost class08 tail_ok=0
  oks=$(cat "$dir"/client_*.out | grep -c '^ok$')
  errors=$(cat "$dir"/client_*.out | grep -c 'ERROR:')
  lost=$(cat "$dir"/client_*.out | grep -ciE 'connection to server was lost|server closed the connection|FATAL' || true)
  # SQLSTATEs on which connection pools (HikariCP, pgJDBC users) discard a connection
  class08=$(cat "$dir"/client_*.out | grep -cE 'ERROR:  (08[0-9A-Z]{3}|57P0[123])' || true)
  for c in 1 2 3 4 5 6 7; do
    [[ $(grep -E '^ok$|ERROR:' "$dir/client_$c.out" | tail -10 | grep -c '^ok$') == 10 ]] && tail_ok=$((tail_ok + 1))
  done
  check $failed "7 psql clients through pgbouncer (transaction pool of 3): $failed exited with an error"
  grep -qE 'ERROR:.*(restarted|terminated)' "$dir/client_7.out"
  check $? "the restart reached the training in flight: $(grep -m1 -o 'ERROR:.*' "$dir/client_7.out")"
  (( errors > 1 ))
  check $? "the worker's restart and failure reached the clients: $errors errors ($(grep -ho 'ERROR:  [0-9A-Z]\{5\}: [^,]*' "$dir"/client_*.out | sort | uniq -c | sort -rn | head -3 | tr -s ' ' | tr '\n' ';'))"
  check "$lost" "no client lost its connection ($lost lost), $oks classifications answered"
  check $(( tail_ok != 7 )) "every client's last 10 calls succeeded ($tail_ok of 7)"
  local logins; logins=$(grep -c 'new connection to server' "$dir/pgbouncer.log" || true)
  (( logins <= 3 ))
  check $? "pgbouncer kept its server connections: $logins opened for a pool of 3"
  check "$class08" "no worker error has a SQLSTATE on which pools drop connections (class 08, 57P01-57P03): $class08 had"
  "${RUN[@]}" kill -INT "$(cat "$dir/pgbouncer.pid")" 2>/dev/null
  q -c "ALTER SYSTEM RESET ptune.model_path" -c "SELECT pg_reload_conf()" >/dev/null
  wait_ready 30 >/dev/null
}

test_training_progress_follows_task_visibility() {
  # trainings name tasks: roles see their own; others' only with SELECT on ptune.prompts
  q -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS prog_alice" -c "DROP ROLE IF EXISTS prog_bob" \
    -c "CREATE ROLE prog_alice LOGIN" -c "CREATE ROLE prog_bob LOGIN" -c "GRANT SELECT ON toy TO prog_alice"
  q -U prog_alice -c "${LONG_TRAINING/\'long\'/\'alice_long\'}" >/dev/null 2>&1 &
  local trainer=$!
  wait_for "SELECT count(*) = 1 FROM ptune.training_progress WHERE step > 0" 30
  local own others_default others_revoked
  own=$(q -U prog_alice -c "SELECT count(*) FROM ptune.training_progress")
  others_default=$(q -U prog_bob -c "SELECT count(*) FROM ptune.training_progress")
  q -c "REVOKE SELECT ON ptune.prompts FROM PUBLIC"
  others_revoked=$(q -U prog_bob -c "SELECT count(*) || ' ' || count(*) FILTER (WHERE task = 'alice_long') FROM ptune.training_progress_rows()")
  q -c "GRANT SELECT ON ptune.prompts TO PUBLIC"
  [[ $own == 1 && $others_default == 1 && $others_revoked == "0 0" ]]
  check $? "alice sees her training ($own), bob sees it by default ($others_default), not after REVOKE ($others_revoked)"
  q -c "SELECT pg_cancel_backend(pid) FROM ptune.training_progress" >/dev/null
  wait "$trainer" 2>/dev/null
  wait_for "SELECT count(*) = 0 FROM ptune.training_progress" 5
  q -c "DROP ROLE prog_bob" -c "REVOKE SELECT ON toy FROM prog_alice" -c "DROP ROLE prog_alice" >/dev/null
}

# A model whose config.json name holds a quote and a backslash, and whose
# weights hold a NaN: model_info() is still valid JSON, and training stops
# with SQLSTATE 22P01 and a message naming the step (not a silent failure).
test_odd_model_name_and_nan_weights() {
  local good; good=$(q -c "SHOW ptune.model_path")
  local odd="$WORK/odd-model"
  rm -rf "$odd" && cp -r "$good" "$odd" || return 1
  /usr/bin/python3 - "$odd" <<'PY' || return 1
import json, struct, sys
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
cfg["_name_or_path"] = 'we"ird\\name'
json.dump(cfg, open(d + "/config.json", "w"))
raw = bytearray(open(d + "/model.safetensors", "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
start = json.loads(raw[8:8 + n])["decoder.final_layer_norm.weight"]["data_offsets"][0]
raw[8 + n + start:8 + n + start + 4] = struct.pack("<f", float("nan"))
open(d + "/model.safetensors", "wb").write(raw)
PY
  [[ $(id -u) -eq 0 ]] && chown -R postgres "$odd"
  q -c "ALTER SYSTEM SET ptune.model_path = '$odd'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT model_name = 'we\"ird\\name' FROM ptune.model_info()" 30
  check $? "the odd model loaded"
  local name; name=$(q_any -c "SELECT config->>'model_name' FROM ptune.model_info()")
  [[ $name == 'we"ird\name' ]]
  check $? "model_info() JSON keeps the name: $name"
  local out; out=$(q_any -c "SET client_min_messages = warning" -c "\\set VERBOSITY verbose" \
    -c "SELECT * FROM ptune.train_prompt('nan_task', 'toy', 'text', 'label', prompt_length => 2, epochs => 0, max_steps => 3, max_input_tokens => 8)")
  [[ $out == *22P01* && $out == *"training stopped at step 1"* && $out == *NaN* ]]
  check $? "a NaN loss: $(echo "$out" | head -1)"
  [[ $(q -c "SELECT count(*) FROM ptune.prompts WHERE task = 'nan_task'") == 0 ]]
  check $? "nothing stored"
  q -c "ALTER SYSTEM RESET ptune.model_path" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT config->>'model_name' = 'ptune-generated/tiny-gated' FROM ptune.model_info()" 30
  check $? "the good model is back"
}

# ptune.precision = int8: the worker switches on reload, model_info() says so and
# names the kernel of each precision (fp32's chosen by measurement), classification
# agrees with fp32 on the toy set, and training (fp32 whatever the precision) works.
#
# The toy prompt's probabilities sit near 0.5, and int8's quantisation moves
# them by up to ~0.03 (test_classify_int8_matches_fp32's bound), so a row whose
# fp32 labels are within 0.05 of each other may flip honestly.  As in that unit
# test, labels are compared on the rows where fp32's top label leads by more
# than 0.05, and there must be at least MIN_CLEAR such rows (else the
# comparison proves nothing).
test_int8_precision_and_kernels() {
  local kernels out n_clear disagree
  local MIN_CLEAR=20
  q -c "ALTER SYSTEM SET ptune.precision = 'fp32'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT config->>'precision' = 'fp32' FROM ptune.model_info()" 10
  q -c "DROP TABLE IF EXISTS int8_fp32_top" -c "CREATE TABLE int8_fp32_top AS
          SELECT id, (array_agg(s.label ORDER BY s.probability DESC))[1] AS label,
                 (array_agg(s.probability ORDER BY s.probability DESC))[1]
               - (array_agg(s.probability ORDER BY s.probability DESC))[2] AS margin
          FROM toy t, ptune.classify_scores('toy', t.text) s GROUP BY id" >/dev/null
  n_clear=$(q -c "SELECT count(*) FROM int8_fp32_top WHERE margin > 0.05")
  q -c "ALTER SYSTEM SET ptune.precision = 'int8'" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT config->>'precision' = 'int8' FROM ptune.model_info()" 10
  check $? "ptune.precision = int8: model_info() says $(q -c "SELECT config->>'precision' FROM ptune.model_info()")"
  kernels=$(q -c "SELECT concat_ws(' ', k->'fp32'->>'forward', k->'fp32'->>'backward', k->'fp32'->>'chosen', k->>'int8')
                  FROM (SELECT config->'kernels' AS k FROM ptune.model_info()) s")
  [[ $kernels =~ ^(openblas|onednn)\ (openblas|onednn)\ (measured|cached).*\ .+ ]]
  check $? "model_info() names the kernels: $kernels"
  disagree=$(q -c "SELECT count(*) FILTER (WHERE ptune.classify('toy', t.text) IS DISTINCT FROM f.label)
                   FROM toy t JOIN int8_fp32_top f USING (id) WHERE f.margin > 0.05")
  [[ $n_clear -ge $MIN_CLEAR && $disagree == 0 ]]
  check $? "int8 labels as fp32 does the $n_clear toy rows with a clear fp32 margin (> 0.05; need >= $MIN_CLEAR): $disagree differ"
  q -c "DROP TABLE int8_fp32_top" >/dev/null
  out=$(q_any -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
        -c "SELECT version FROM ptune.train_prompt('int8_t', 'toy', 'text', 'label', prompt_length => 4,
              init => 'random_uniform', learning_rate => 0.1, epochs => 0, max_steps => 5, max_input_tokens => 16)")
  check $? "training while the precision is int8 (it computes in fp32): ${out//$'\n'/ }"
  q -c "ALTER SYSTEM RESET ptune.precision" -c "SELECT pg_reload_conf()" >/dev/null
  wait_for "SELECT config->>'precision' <> 'int8' FROM ptune.model_info()" 10
  check $? "back to the default precision"
}

# ptune.generate stops decoding between steps when its query is cancelled: the
# one-row call after the cancel does not wait for the rest of the batch.
GEN_BIG="SELECT count(*) FROM unnest(ptune.generate(NULL, (SELECT array_agg('the dog here ' || i)
         FROM generate_series(1, current_setting('ptune.batch_size')::int) i), 512, 8))"
test_generate_cancelled_mid_decode() {
  # one engine call of ptune.batch_size rows, 8 beams, up to 512 steps: how long it takes whole
  # (several seconds; 16 beams took twice as long for no more evidence)
  local out full took
  out=$(q -c '\timing on' -c "$GEN_BIG")
  full=$(echo "$out" | awk '/^Time:/ {print $2 / 1000}')
  (( $(echo "${full:-0} > 1.0" | bc) ))
  check $? "an uncancelled batch decodes for ${full:-?} s (long enough to tell a cancel mid-decode)"
  q -c "$GEN_BIG" > "$WORK/gen_cancel.out" 2>&1 &
  local big=$!
  wait_for "SELECT running > 0 FROM ptune.status()" 10
  sleep 0.3
  q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
        WHERE query LIKE 'SELECT count(*) FROM unnest(ptune.generate(NULL%' AND pid <> pg_backend_pid()" >/dev/null
  wait $big
  grep -q "canceling statement due to user request" "$WORK/gen_cancel.out"
  check $? "the caller saw: $(grep ERROR "$WORK/gen_cancel.out" | head -1)"
  out=$(q -c '\timing on' -c "SELECT ptune.generate(NULL, 'a dog', 4) IS NOT NULL")
  took=$(echo "$out" | awk '/^Time:/ {print $2 / 1000}')
  [[ $out == t* ]] && (( $(echo "${took:-9} < $full / 2" | bc) ))
  check $? "the next call took ${took:-?} s after the cancel (a whole batch: ${full:-?} s)"
  [[ $(q -c "SELECT queued + running FROM ptune.status()") == 0 ]]
  check $? "no request is left behind"
}
