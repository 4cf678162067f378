/* Gwanje LOTs: a machine tile is one link to the machine page, and the LOT number on it is a
   link of its own (to /lot/<LOT>). The tile's link would take the click as it bubbles up, so
   a click on the LOT is taken here first (capture phase, before React sees it) and followed
   the way a dcc.Link does: history push, Dash's location event, top of the page. */
(function () {
  window.addEventListener("click", function (e) {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) { return; }
    var a = e.target && e.target.closest ? e.target.closest("a.gw-tile-lot-link") : null;
    if (!a || !a.parentElement || !a.parentElement.closest("a")) { return; }
    e.stopPropagation();
    e.preventDefault();
    window.history.pushState({}, "", a.getAttribute("href"));
    window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
    window.scrollTo(0, 0);
  }, true);
})();
