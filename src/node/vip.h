/* vip.h — virtual IP addresses on this node: added and removed through rtnetlink (libmnl), and
 * announced with gratuitous ARP (IPv4: an ARP request and an ARP reply, both with sender and
 * target = the VIP, to the broadcast address) or an unsolicited neighbour advertisement (IPv6: to
 * ff02::1, override flag set) sent from a packet socket on the VIP's device.
 *
 * Every call is synchronous (the kernel answers netlink at once), allocation-free, and safe to
 * call from the guardian process. Adding a present address and deleting an absent one succeed:
 * callers state what they want, not what they think the kernel has.
 */
#ifndef US_VIP_H
#define US_VIP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/model.h"

/* Parse "198.18.0.100/24 dev eth0" or "2001:db8::10/64 dev eth0" (prefix required; the device
 * name must be a valid interface name, not necessarily present here). 0, or -EINVAL with a message
 * naming what was expected in err. */
int us_vip_parse(const char *text, us_vip *out, char *err, size_t errlen);

/* Does the VIP's device exist on this node? */
bool us_vip_dev_exists(const us_vip *v);

int us_vip_add(const us_vip *v);     /* 0 or -errno */
int us_vip_del(const us_vip *v);     /* 0 or -errno */
int us_vip_present(const us_vip *v); /* 1 present, 0 absent, -errno */

/* Send one announcement (gratuitous ARP request + reply, or one unsolicited NA). 0 or -errno. */
int us_vip_announce(const us_vip *v);

/* Can this process manage VIPs (effective CAP_NET_ADMIN and CAP_NET_RAW)? If not, `why` says
 * which capability is missing. */
bool us_vip_capable(char *why, size_t len);

#endif
