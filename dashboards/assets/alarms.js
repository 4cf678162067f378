/* Gwanje alarms: the beep of a new critical alarm on a wall display, muted per display.
   State lives in this browser's localStorage, so each wall display has its own mute and its
   own memory of which critical alarms it already sounded for. Browsers only play audio after
   a user gesture on the page: tapping mute/unmute once on a new display arms the sound. */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  gwanjeAlarms: {
    sound: function (title) {
      var ids = (title || "").split(" ").filter(Boolean);
      var seen = [];
      try { seen = JSON.parse(localStorage.getItem("gw-alarm-seen") || "[]"); } catch (e) { seen = []; }
      var fresh = ids.filter(function (x) { return seen.indexOf(x) < 0; });
      localStorage.setItem("gw-alarm-seen", JSON.stringify(ids));
      var muted = localStorage.getItem("gw-alarm-muted") === "1";
      var wall = !!document.querySelector(".gw-kiosk");
      if (fresh.length && wall && !muted) {
        window.gwanjeBeeps = (window.gwanjeBeeps || 0) + 1;  // read by the browser test
        try {
          var Ctx = window.AudioContext || window.webkitAudioContext;
          var ctx = window.gwanjeAudio || (window.gwanjeAudio = new Ctx());
          [0, 0.35, 0.7].forEach(function (t0) {
            var o = ctx.createOscillator(), g = ctx.createGain();
            o.type = "square"; o.frequency.value = 880;
            g.gain.value = 0.2;
            o.connect(g); g.connect(ctx.destination);
            o.start(ctx.currentTime + t0); o.stop(ctx.currentTime + t0 + 0.2);
          });
        } catch (e) { /* no audio device: the banner still shows the alarm */ }
      }
      return fresh.length ? "gw-alarm-crit gw-alarm-crit-new" : "gw-alarm-crit";
    },
    mute: function (n) {
      var btn = document.getElementById("gw-alarm-mute");
      if (n) {
        var m = localStorage.getItem("gw-alarm-muted") === "1";
        localStorage.setItem("gw-alarm-muted", m ? "0" : "1");
        if (window.gwanjeAudio && window.gwanjeAudio.resume) { window.gwanjeAudio.resume(); }
      }
      var muted = localStorage.getItem("gw-alarm-muted") === "1";
      if (!btn) { return window.dash_clientside.no_update; }
      return muted ? btn.getAttribute("data-unmute") : btn.getAttribute("data-mute");
    }
  }
});
