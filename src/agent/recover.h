/* recover.h — `understudy recover`: rebuild the voter set of a cluster that lost its voter
 * majority for good, from a survivor's data dir, keeping the replicated state (services,
 * assignments, epochs, failure records, events). docs/operations.md, "Losing the majority".
 *
 * Promise, run on a node whose agent is stopped:
 * - Refuses (exit 1, nothing written) when the data dir is locked (its agent runs), holds no Raft
 *   data, when a named voter is not a member of the last configuration, or when this node and the
 *   voters of the last configuration that answer over the cluster transport (authenticated with
 *   the cluster key, a request no handler accepts, so the peers change nothing) form a majority
 *   of that configuration: then the cluster can elect a leader, and the agent is simply started.
 * - Reads the log from a copy of DATA_DIR/raft (loading the real one would close its open
 *   segment), so that a refusal leaves every byte of the data dir as it was.
 * - Prints what it found (last entry, the last configuration, who answered) and the new
 *   configuration; writes it only with `yes` (libraft's raft_recover: one configuration entry
 *   appended to the log on disk, every earlier entry kept).
 * Exit status: 0 written, 1 refused or failed, 2 bad voters list. */
#ifndef US_RECOVER_H
#define US_RECOVER_H

#include <stdbool.h>

#include "config/config.h"

/* `voters`: comma-separated node names, this node among them (NULL: this node alone). */
int us_agent_recover(const us_node_config *cfg, const char *voters, bool yes);

#endif
