#!/usr/bin/env python3
"""How the session-2 figures were taken: npairs_bench runs alternating between
builds (build/h1-<variant>), one round after another. A run is kept only when
other processes used < 3 % of the 2 cores while it ran (/proc/stat's busy
time minus the run's own rusage); otherwise it is repeated after 5 s.

  python3 alternate.py --variants base mine --rounds 8 --threads 0 --baselines --out DIR
  python3 alternate.py --variants base mine --rounds 5 --threads 1 --out DIR
"""
import argparse, os, subprocess, time

ap = argparse.ArgumentParser()
ap.add_argument('--variants', nargs='+', required=True)
ap.add_argument('--rounds', type=int, default=5)
ap.add_argument('--out', required=True)
ap.add_argument('--threads', default='0')
ap.add_argument('--rows', default='1024,2048,4096')
ap.add_argument('--repeats', default='15')
ap.add_argument('--baselines', action='store_true')
ap.add_argument('--max-tries', type=int, default=40)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
HZ = os.sysconf('SC_CLK_TCK')


def busy_seconds():
    f = list(map(int, open('/proc/stat').readline().split()[1:]))
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / HZ


log = open(os.path.join(a.out, 'log'), 'a')
for r in range(1, a.rounds + 1):
    for v in a.variants:
        for t in range(a.max_tries):
            cmd = [f'build/h1-{v}/bench/npairs_bench', '--backend', 'cpu', '--input', 'similarity',
                   '--rows', a.rows, '--grads', 'similarity', '--repeats', a.repeats,
                   '--threads', a.threads, '--json', os.path.join(a.out, f'{v}-{r}.json')]
            if not a.baselines:
                cmd.append('--no-baselines')
            b0, w0 = busy_seconds(), time.time()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(p.pid, 0)
            wall = time.time() - w0
            other = (busy_seconds() - b0 - usage.ru_utime - usage.ru_stime) / (2 * wall)
            kept = other < 0.03 and status == 0
            print(f'{time.strftime("%T")} round {r} {v} try {t}: wall {wall:.1f}s other {100 * other:.1f}% '
                  f'{"kept" if kept else "discarded"}', file=log, flush=True)
            if kept:
                break
            time.sleep(5)
