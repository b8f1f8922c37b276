/* version.h — the version every part reports (CLI, API, metrics, datagram protocol aside). */
#ifndef US_VERSION_H
#define US_VERSION_H

#define US_VERSION "0.1.0"

#endif
