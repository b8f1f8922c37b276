/* suggest.h — "did you mean": the one edit distance of understudy, and the nearest of a list of
 * known words to a mistyped one. Used for the CLI's commands, subcommands and options and for the
 * keys of a services file.
 *
 * Distances are for short words (under 32 bytes) and only tell near from far: anything above 2 is
 * US_SUGGEST_FAR. Bytes are compared as they are (callers fold case if they want to). */
#ifndef US_SUGGEST_H
#define US_SUGGEST_H

#include <stddef.h>

#define US_SUGGEST_FAR 3

/* Edits that turn `a` into `b`: an inserted, deleted or replaced byte, or a swap of two
 * neighbours ("stauts"), is one. 0, 1, 2, or US_SUGGEST_FAR for anything further (or a word of
 * 32 bytes or more). */
int us_edit_distance(const char *a, const char *b);

/* The candidate that `word` most likely meant, or NULL: the nearest at distance 1 or 2 (the
 * first of equals), provided the distance is less than the length of both words ("ab" is not a
 * typo of "cd"); failing that, a candidate that starts with `word` when it has 3 bytes or more
 * ("stat" for "status"). `cands` holds `n` words (NULL entries are skipped). */
const char *us_suggest(const char *word, const char *const *cands, size_t n);

#endif
