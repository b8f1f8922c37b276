/* suggest.c — see suggest.h. */
#include "lib/suggest.h"

#include <string.h>

/* The optimal string alignment distance (Damerau-Levenshtein without editing a swapped pair
 * again), over three rows. */
int us_edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 32 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXLEN || lb >= MAXLEN || (la > lb ? la - lb : lb - la) > 2)
        return US_SUGGEST_FAR;
    int prev2[MAXLEN + 1], prev[MAXLEN + 1], row[MAXLEN + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            row[j] = best;
        }
        memcpy(prev2, prev, sizeof prev);
        memcpy(prev, row, sizeof row);
    }
    return prev[lb] >= US_SUGGEST_FAR ? US_SUGGEST_FAR : prev[lb];
}

const char *us_suggest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    int best_d = US_SUGGEST_FAR;
    size_t wl = strlen(word);
    for (size_t i = 0; i < n; i++) {
        if (!cands[i])
            continue;
        size_t cl = strlen(cands[i]);
        int d = us_edit_distance(word, cands[i]);
        if (d < best_d && (size_t)d < cl && (size_t)d < wl) {
            best = cands[i];
            best_d = d;
        }
        /* An unambiguous start counts too, unless something nearer turns up. */
        if (!best && wl >= 3 && strncmp(cands[i], word, wl) == 0)
            best = cands[i];
    }
    return best;
}
