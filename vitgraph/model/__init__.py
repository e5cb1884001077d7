"""Services on a built model: timm's model API (``api``), where it cuts a model
(``layout``) and how it runs the pieces (``segments``)."""
