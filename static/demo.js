// Demo page controls. Kept out of the HTML because regie's pages forbid inline
// scripts (Content-Security-Policy: script-src 'self').
(function () {
  'use strict';
  const status = document.getElementById('regie-status');
  const button = document.getElementById('refresh-ads');

  function report(fill) {
    return fill.then((slots) => {
      const filled = slots.filter((s) => s.state === 'filled').length;
      status.textContent = filled + ' annonce' + (filled > 1 ? 's' : '') + ' sur ' +
        slots.length + ' emplacements';
    });
  }

  // The tag is async: it has run by the time the load event fires.
  window.addEventListener('load', () => {
    if (!window.regie) {
      status.textContent = 'Le script de la régie ne s’est pas chargé.';
      button.disabled = true;
      return;
    }
    report(window.regie.ready);
    button.addEventListener('click', () => {
      button.disabled = true;
      status.textContent = 'Nouvelles annonces…';
      report(window.regie.refresh()).finally(() => { button.disabled = false; });
    });
  });
})();
