"""Threading's rules as pure functions: no I/O, no framework, no store.

* ``case``: the typed case aggregate (``Case``, ``Interaction``);
* ``email``: the typed email aggregate (``Email``) and the inbound email built from a received
  mail;
* ``rounds``: a case's routing rounds (start one, end the current one);
* ``cases``: the case document (new case, emails, notes, dispositions, closing);
* ``outbound``: outbound mail and automatic answers, built deterministically.

Each transition changes the case document it is given and returns the messages the change
causes; the handlers load, call these, store and publish. The older pure modules beside this
package (``rules``, ``access``, ``masking``, ``subjects``, ``templates``) are rules too.
"""
