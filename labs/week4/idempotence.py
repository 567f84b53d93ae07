"""Week 4 exercise: an idempotent consumer, which handles each message once however often
it is delivered.

Kafka can deliver a message more than once. A card service that runs at-least-once and
crashes between writing its events and committing its offsets handles the same commands
again after the restart, so `card-events` holds some events twice. A reader that sends a
text message for every `CardBlocked` would then text the card holder twice.

The cure is on the reader's side: every message carries an id that a redelivery repeats
(an event's `event_id` derives from its command's id, `BlockCard-42#0`), so the reader
remembers the ids it has handled and skips one it has seen. Remembering every id forever
would grow without end; a duplicate follows its original closely (it comes from the last
few seconds before a crash), so remembering the last `window` ids is enough.

`rtml.cards.notifications.SeenIds` keeps that memory for the notification service, and
asks this function about every event it reads: with RTML_IMPL=labs your function decides
which notifications are sent.
"""

from __future__ import annotations

from collections.abc import MutableMapping


def first_delivery(seen: MutableMapping[str, None], message_id: str, window: int) -> bool:
    """Return True the first time `message_id` is seen (and remember it), False for a repeat.

    `seen` holds the ids remembered so far as its keys (the values are all None), oldest
    first: a dict, or the `OrderedDict` `SeenIds` passes, keeps its keys in insertion
    order. Change it in place: add a new id, and when it then holds more than `window` ids,
    forget the oldest ones until `window` are left. A repeat changes nothing.

    Example: with window 2 and seen {} ->
    first_delivery(seen, "e1#0", 2) True, seen {"e1#0"};
    first_delivery(seen, "e1#0", 2) False (a duplicate);
    first_delivery(seen, "e2#0", 2) True; first_delivery(seen, "e3#0", 2) True, and "e1#0"
    is forgotten: seen {"e2#0", "e3#0"}, so a very late repeat of "e1#0" counts as new.

    Think about:
    - `message_id in seen` is a dict lookup: as fast with 100,000 ids as with 10.
    - Which id is the oldest? `next(iter(seen))`, because dicts keep insertion order.
    - Should a repeat move its id to the newest end? Here it does not: the window is
      counted in deliveries of new ids, so memory stays bounded by `window` whatever comes.
    - What does a restart forget, and why does the exactly-once card service make that
      harmless?
    """
    raise NotImplementedError(
        "TODO week 4: return False if the id is in `seen`; else add it, forget the oldest "
        "ids beyond `window`, and return True"
    )
