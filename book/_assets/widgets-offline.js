// Loaded between require.js and the widget manager (@jupyter-widgets/html-manager 1.x) on pages
// that show saved widgets, so that they render with no network and no console errors.
(function () {
  // 1. The widget manager loads its icon fonts from a path relative to its AMD module,
  //    "<page folder>/@jupyter-widgets/html-manager/dist/": point that module at _static.
  var root = document.documentElement.dataset.content_root || "";
  if (window.require && window.require.config) {
    window.require.config({
      paths: { "@jupyter-widgets/html-manager/dist": root + "_static/html-manager" },
    });
  }
  // 2. It typesets widget labels with MathJax 2's API (MathJax.Hub.Queue); the book loads
  //    MathJax 3. Translate that one call once MathJax 3 is in place.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (mj && !mj.Hub) {
      mj.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          if (element && mj.typesetPromise) {
            mj.typesetPromise([element]).catch(function () {});
          }
        },
      };
    }
  });
})();
