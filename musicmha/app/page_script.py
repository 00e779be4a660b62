"""The page's own script and style, without gradio: the playhead that follows each player over its piano roll,
bar numbers thinned where they would run together (a roll drawn for a laptop shown on a phone), and the
layout rules (results grid, the roll's legend under it on a narrow screen, empty download boxes hidden).

The rolls are HTML made by views.roll_html: `data-x0`/`data-x1` are the plot's edges (fractions of the
width), `data-end` the time at its right edge, `data-heard` the roll time where the player's audio starts
(a long piece is heard from its last bars, see service.audible_start).
"""

from __future__ import annotations

# Gradio's audio player plays through a hidden <audio> inside the component; media events do not bubble,
# so they are caught on the way down (capture). timeupdate only fires ~4 times a second: while anything
# plays, a frame loop moves the playhead smoothly. Bar numbers are thinned after every change to the page
# and on resize: a number is hidden when it would touch the one shown before it.
PLAYHEAD_JS = """
<script>
(() => {
  if (window.musicmhaPlayhead) return;
  const sync = (audio) => {
    const box = audio.closest('[id^="result-audio-"], #prompt-audio');
    if (!box) return;
    const roll = document.querySelector(`.mm-roll[data-audio="${box.id}"]`);
    if (!roll) return;
    const head = roll.querySelector('.mm-playhead');
    const x0 = +roll.dataset.x0, x1 = +roll.dataset.x1, end = +roll.dataset.end;
    const t = audio.currentTime || 0, heard = +(roll.dataset.heard || 0);
    head.style.left = `${100 * (x0 + (x1 - x0) * Math.min((heard + t) / end, 1))}%`;
    head.style.display = (audio.paused && t === 0) ? 'none' : 'block';
    roll.dataset.playing = audio.paused ? '0' : '1';
    roll.dataset.time = t.toFixed(3);
  };
  window.musicmhaPlayhead = sync;
  for (const type of ['play', 'pause', 'ended', 'seeked', 'timeupdate', 'emptied', 'loadstart',
                      'loadedmetadata']) {
    document.addEventListener(type, (event) => {
      if (event.target instanceof HTMLMediaElement) sync(event.target);
    }, true);
  }
  const frame = () => {
    document.querySelectorAll('audio').forEach((audio) => { if (!audio.paused) sync(audio); });
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const thin = () => {
    document.querySelectorAll('.mm-roll').forEach((roll) => {
      let last = -Infinity;
      roll.querySelectorAll('.mm-bar').forEach((bar) => {
        bar.style.visibility = 'visible';
        const box = bar.getBoundingClientRect();
        if (!box.width) return;  // not laid out (a closed tab): thinned when it shows
        if (box.left < last + 4) bar.style.visibility = 'hidden'; else last = box.right;
      });
    });
  };
  window.musicmhaThin = thin;
  let pending = false;
  const later = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; thin(); }); } };
  new MutationObserver(later).observe(document.documentElement, {childList: true, subtree: true});
  window.addEventListener('resize', later);
  document.addEventListener('load', later, true);  // a roll's picture sets its height when it loads
})();
</script>
"""

CSS = """
.mm-roll { position: relative; width: 100%; line-height: 0; }
.mm-roll img { width: 100%; height: auto; display: block; }
.mm-roll.mm-empty { line-height: 1.4; padding: 2em 1em; color: var(--body-text-color-subdued);
  border: 1px dashed var(--border-color-primary); text-align: center; }
.mm-playhead { position: absolute; left: 0; width: 2px; margin-left: -1px; background: #0a0; display: none;
  pointer-events: none; }
.mm-range { position: absolute; background: rgba(255, 160, 0, 0.16); border-left: 2px solid #e08a00;
  border-right: 2px solid #e08a00; box-sizing: border-box; pointer-events: none; }
.mm-range span { position: absolute; bottom: 2px; left: 3px; font-size: 11px; line-height: 1.2; color: #a55f00;
  background: rgba(255, 255, 255, 0.8); padding: 0 2px; white-space: nowrap; }
.mm-unheard { position: absolute; background: rgba(120, 120, 120, 0.12); pointer-events: none; }
.mm-unheard span { position: absolute; bottom: 2px; left: 3px; font-size: 11px; line-height: 1.2; color: #555;
  background: rgba(255, 255, 255, 0.8); padding: 0 2px; white-space: nowrap; }
.mm-bar { position: absolute; font-size: 10px; line-height: 1.2; color: #555; border-left: 1px solid #999;
  padding-left: 2px; pointer-events: none; white-space: nowrap; }
.mm-legend { display: none; line-height: 1.3; font-size: 13px; margin-top: 4px; }
.mm-legend span { display: inline-block; margin-right: 10px; white-space: nowrap; }
.mm-legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
#bar-range { align-items: end; }
.mm-caption { font-size: 0.85em; color: var(--body-text-color-subdued); line-height: 1.3; margin-top: 2px; }
.mm-hidden { display: none !important; }
[id^="result-midi-"]:not(:has(a)) { display: none !important; }
#results { display: grid !important; gap: 12px; grid-template-columns: 1fr; }
#results:has(> :nth-child(2)) { grid-template-columns: 1fr 1fr; }
#results:has(> :nth-child(3)) { grid-template-columns: 1fr 1fr 1fr; }
#results:has(> :nth-child(4)) { grid-template-columns: 1fr 1fr; }
#results > * { min-width: 0 !important; }
@media (max-width: 700px) {
  #results, #results:has(> :nth-child(2)), #results:has(> :nth-child(3)), #results:has(> :nth-child(4)) {
    grid-template-columns: 1fr; }
  .mm-legend { display: block; }
}
"""
