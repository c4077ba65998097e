/* connroute: the background thread (metrics listener + config watcher).
 *
 * Started lazily by cr_bg_kick() from the routed paths, never from the
 * constructor, and never inherited: after fork the child starts its own on
 * first use. It blocks every signal (the host's signals are never delivered
 * to it), and its sockets are made with raw calls, never routed. */
#ifndef CR_BG_H
#define CR_BG_H

/* Cheap when already running (one relaxed load and a pid compare). */
void cr_bg_kick(void);

/* For tests and the atfork child handler. */
void cr_bg_atfork_child(void);

#endif
