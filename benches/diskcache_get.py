"""Python's diskcache (SQLite too) on the kind of value the disk bench reads: the median time
of one `Cache.get` of a fragment of about 200 bytes, a hit, as `cargo bench -p benches --bench
disk` measures `cache_runtime` (disk_hit, L1 emptied). diskcache's own published figure for a
get is a 12 µs median.

    pip install diskcache        # already installed on the bench machine
    python3 benches/diskcache_get.py [ROUNDS]
"""

import shutil
import statistics
import sys
import tempfile
import time

import diskcache


def fragment(n):
    # The same value as benches::fragment(n).
    return '<div class="fragment">%d</div>%s' % (n, "x" * 170)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    directory = tempfile.mkdtemp(prefix="diskcache-bench-")
    try:
        cache = diskcache.Cache(directory)
        for n in range(50):
            cache.set("bench:%d" % n, fragment(n), expire=600)
        assert cache.get("bench:1") == fragment(1)
        for _ in range(1000):  # warm-up
            cache.get("bench:1")
        clock = time.perf_counter_ns
        samples = []
        for _ in range(rounds):
            started = clock()
            cache.get("bench:1")
            samples.append(clock() - started)
        page = []
        for _ in range(max(rounds // 50, 100)):
            started = clock()
            for n in range(50):
                cache.get("bench:%d" % n)
            page.append(clock() - started)
        cache.close()
        print("diskcache %s, Python %s" % (diskcache.__version__, sys.version.split()[0]))
        print("  Cache.get, hit:         median %8.1f µs over %d rounds"
              % (statistics.median(samples) / 1000, rounds))
        print("  50 Cache.get (a page):  median %8.1f µs over %d rounds"
              % (statistics.median(page) / 1000, len(page)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
