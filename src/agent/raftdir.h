/* raftdir.h — finish what a crash interrupted in a Raft data directory that libraft then refuses to
 * load ("closed segment X is past last snapshot Y", RAFT_CORRUPT at every start).
 *
 * libraft (0.22, raft/uv) keeps its log in closed segments named FIRST-LAST, open segments named
 * open-N and snapshots named snapshot-TERM-INDEX-TIME (+ .meta). Two of its operations remove
 * closed segments one by one, oldest first: truncating conflicting entries (a follower drops the
 * tail an old leader left, never a committed entry) and installing a snapshot sent by the leader
 * (it drops the whole log). A kill -9 in the middle of either leaves the newest closed segments on
 * disk with a hole between them and the snapshot. At start libraft keeps only the newest unbroken
 * run of closed segments and refuses to start when that run begins after the snapshot's index + 1:
 * the node cannot start again, whatever it is told (seen in `make chaos`, after a kill -9).
 *
 * Promises:
 *  - us_raftdir_plan() is pure. Given a directory's listing it marks the files to move aside: the
 *    runs of closed segments that libraft would refuse because they begin after the newest
 *    snapshot's index + 1 (run by run, as libraft looks at them, until the newest remaining run
 *    joins the snapshot or there is none). It mirrors libraft's own check: it marks nothing in a
 *    directory that libraft loads (a snapshot without its data file, or with an empty one, does not
 *    count; no snapshot means nothing to repair). It returns the number of files marked, 0 when
 *    there is nothing to do, and -1 (with `why`) when the layout is not one a crash in a truncation
 *    or an install leaves: an open segment that holds entries while a run is to be dropped (its
 *    entries would be read as following the wrong segment). Then it marks nothing.
 *  - us_raftdir_repair(DIR) lists DIR, plans, and moves the marked files into a new sibling
 *    directory DIR-corrupt-<wall ms> (kept for inspection, never read again), with both
 *    directories fsynced. It returns the number of files moved (0: DIR needed nothing, DIR
 *    unchanged), or -1 with a message (a refused plan, or an I/O error: files moved before it stay
 *    moved, and a repeat finishes the rest). A missing DIR needs nothing; a DIR of more than 65,536
 *    files (not libraft's layout) is refused and left as it is.
 *
 * What it does not promise: that the dropped entries were never acknowledged. In the two crashes
 * above they were not committed (a truncated tail never is; an install that replaces a follower's
 * log is sent only when that log does not match the leader's past its snapshot); the node fetches
 * the rest from the leader like any follower that is behind. A hole made by other means (files
 * deleted by hand) is repaired the same way, at the risk Raft always takes when a voter loses
 * entries it acknowledged; and then the leader that recorded those acknowledgements takes the
 * node's refusals of them for stale ones (libraft's pipeline) and the node catches up only under
 * the next leader.
 */
#ifndef US_RAFTDIR_H
#define US_RAFTDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct us_raftdir_file {
    const char *name; /* the file's name in the directory */
    uint64_t size;
    bool holds_entries; /* open segments: a batch header past the format word is not all zero */
} us_raftdir_file;

int us_raftdir_plan(const us_raftdir_file *files, int n, bool *move, char *why, size_t whylen);

int us_raftdir_repair(const char *dir, char *msg, size_t msglen);

#endif
