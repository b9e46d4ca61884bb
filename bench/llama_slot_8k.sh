#!/usr/bin/env bash
# The 8K-context evaluation model's slot file through kvtc (issue 13: ">= 15x
# for the 8K-context evaluation model"): calibrate a basis for
# data/eval-qwen2-12m-q8_0.gguf on held-out dictionary text, prefill ~7.6K
# tokens of data/persuasion.txt in a real llama-server, save the slot,
# compress and expand it with kvtc, restore both into the server and
# continue 32 tokens greedily. Not run by CI (no llama.cpp there).
#   LLAMA_SERVER=/path/llama-server bench/llama_slot_8k.sh
# Env: KVTC (build/kvtc), PORT (18111), RATIOS ("20 32": the default plan and one more).
# About 5 minutes on the 2-core dev machine (most of it the calibration).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LLAMA_SERVER:-}" ] || [ ! -x "$LLAMA_SERVER" ]; then
  echo "llama_slot_8k: set LLAMA_SERVER to an executable llama-server; skipped" >&2
  exit 77
fi
. scripts/blas-env.sh
K=${KVTC:-build/kvtc}
M=data/eval-qwen2-12m-q8_0.gguf
H=models/train/heldout/eval_dictionary.txt
[ -f "$H" ] || { echo "llama_slot_8k: $H missing (models/train/prepare_data.sh makes it)" >&2; exit 2; }
O=bench/out/llama_slot_8k
PORT=${PORT:-18111}
mkdir -p $O
[ -f $O/basis.safetensors ] || $K calibrate -o $O/basis.safetensors --model $M --text $H --ctx 8192 --windows 2 --sens-windows 1
SLOTS=$(mktemp -d /tmp/kvtc-slot8k-XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$SLOTS"' EXIT
"$LLAMA_SERVER" -m $M --slot-save-path "$SLOTS/" -c 8192 -np 1 -t 2 --host 127.0.0.1 --port "$PORT" \
  --cache-ram 0 > $O/server.log 2>&1 &
PID=$!
python3 - "$PORT" "$SLOTS" "$K" "$O" "$M" ${RATIOS:-20 32} <<'PY'
import json, os, subprocess, sys, time, urllib.request
port, slots, kvtc, out, model = sys.argv[1:6]
ratios = sys.argv[6:]
url = 'http://127.0.0.1:%s' % port
for _ in range(120):
    try:
        urllib.request.urlopen(url + '/health', timeout=2)
        break
    except Exception:
        time.sleep(0.5)
def post(path, obj):
    r = urllib.request.Request(url + path, data=json.dumps(obj).encode(), headers={'Content-Type': 'application/json'})
    return json.load(urllib.request.urlopen(r, timeout=900))
prompt = open('data/persuasion.txt').read()[:25000]
r = post('/completion', {'prompt': prompt, 'n_predict': 1, 'cache_prompt': True, 'temperature': 0})
post('/slots/0?action=save', {'filename': 'orig.bin'})
orig = os.path.join(slots, 'orig.bin')
def cont(name):
    post('/slots/0?action=restore', {'filename': name})
    r = post('/completion', {'prompt': prompt, 'n_predict': 32, 'cache_prompt': True, 'temperature': 0,
                             'return_tokens': True})
    assert r['timings']['prompt_n'] == 1, 'the restored cache was not reused'
    return r['tokens']
ref = cont('orig.bin')
print('| plan ratio | tokens | slot bytes | compressed bytes | on disk | compress s | expand s | greedy identical of 32 |')
print('|---|---|---|---|---|---|---|---|')
for ratio in ratios:
    z = os.path.join(out, 'slot_r%s.kvtc' % ratio)
    t = time.time()
    subprocess.run([kvtc, 'compress', '--basis', os.path.join(out, 'basis.safetensors'), '--model', model,
                    '--ratio', ratio, orig, '-o', z], check=True, capture_output=True)
    tc = time.time() - t
    back = 'back_r%s.bin' % ratio
    t = time.time()
    subprocess.run([kvtc, 'decompress', '--basis', os.path.join(out, 'basis.safetensors'), '--model', model, z,
                    '-o', os.path.join(slots, back)], check=True, capture_output=True)
    te = time.time() - t
    got = cont(back)
    same = sum(a == b for a, b in zip(ref, got))
    n0, n1 = os.path.getsize(orig), os.path.getsize(z)
    print('| %s | %d | %d | %d | %.2fx | %.2f | %.2f | %d |' % (ratio, r['timings']['prompt_n'] + 1 - 1, n0, n1,
                                                               n0 / n1, tc, te, same))
PY
