// The index page: each form[data-job-form] starts its job with the bundled widget and shows
// the bar in its card. Nothing else is needed: FlaskJobs.start() posts the form, follows the
// 202's Location and drives the bar; the promise settles when the job does.
(function () {
  'use strict';

  // One line about a finished job: the task's own summary, else the group's count.
  function describe(s) {
    if (s.result && s.result.summary) return s.result.summary;
    if (s.total != null && s.completed != null) {
      return 'Report ready: ' + s.completed + ' of ' + s.total + ' sections built.';
    }
    return 'Done.';
  }

  // The text of a start that was refused (400/413 carry {"error": "..."}).
  function refusal(err) {
    try { return JSON.parse(err.message).error || err.message; } catch (e) { return err.message; }
  }

  function show(el, text, kind) {
    el.textContent = text;
    el.className = 'job-result ' + kind;
    el.hidden = !text;
  }

  // Choosing a file means importing it.
  document.addEventListener('change', function (ev) {
    if (ev.target.type !== 'file' || !ev.target.files.length) return;
    const upload = ev.target.form.querySelector('input[name=source][value=upload]');
    if (upload) upload.checked = true;
  });

  document.addEventListener('submit', function (ev) {
    const form = ev.target.closest('form[data-job-form]');
    if (!form || !window.FlaskJobs) return; // no widget: the browser posts, we redirect
    ev.preventDefault();
    const job = form.closest('.card').querySelector('.job');
    const bar = job.querySelector('.job-bar'), result = job.querySelector('.job-result');
    const button = form.querySelector('[type=submit]');
    button.disabled = true;
    show(result, '', '');
    job.hidden = false;
    FlaskJobs.start(form, {element: bar})
      .then(function (s) { show(result, describe(s), 'ok'); })
      .catch(function (err) {
        // A failed or cancelled job is rendered by the bar itself; a refused start is not.
        if (!err.status) {
          show(result, refusal(err), 'error');
          bar.hidden = true;
        }
      })
      .finally(function () { button.disabled = false; });
    bar.hidden = false;
  });
})();
